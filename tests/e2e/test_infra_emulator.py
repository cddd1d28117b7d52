"""The real stack applied, updated and destroyed on the AWS emulator, the way CI and an operator run it.

One module-scoped cycle (tests/support/aws_emulator.py starts moto with the checks AWS makes that moto skips):
bootstrap apply with the runbook's variables (an administrator) -> CI's init of the main stack, with the
backend settings deploy-infrastructure.yml passes, resolved through the runbook's repository variables ->
the runbook's first apply, with no image (infra/README.md step 3, under the apply role's policy) and its
model upload (step 5) -> main plan (plan role) and apply of that plan (apply role) -> a plan against a
held state lock -> the runbook's smoke calls (step 8) after a scaling step's test notifications, each AWS
call recorded for the caller policy (step 9) -> re-plan (no changes) -> five deploys, each planned and
applied: SDXL-turbo's profile, a new image tag while autoscaling runs two instances, a new instance type,
the SNS interface endpoint on and off again -> the runbook's teardown of the stack, its buckets' contents
included, and of the bootstrap (an administrator). Every AWS request of each run is read from Terraform's
debug log and must be allowed by the policy of the CI role that runs it. The runbook's commands are read
from infra/README.md (tests/support/runbook.py), and the workflows' settings from .github/workflows
(tests/support/workflows.py), not copied here.

The tests below each read one fact of that cycle; a step that failed fails its own test with Terraform's
output, and the steps after it report that they were not reached.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support import aws_calls, ecr_lifecycle, github_oidc, iam_policy, runbook, workflows
from tests.support.iam_policy import Permission
from tests.support.aws_emulator import ACCOUNT_ID, REGION, Emulator
from tests.support.helpers import REPO
from tests.support.terraform_root import Root, Run, backend_config
from tests.support.terraform_trace import Operation

pytestmark = [pytest.mark.infra, pytest.mark.timeout(900)]

NAME = "sdturbo"  # both roots' default `name`
# What GitHub answers the runbook's `gh` commands for the repository (step 1 writes them into the bootstrap's
# variables): its name and its immutable owner and repository ids, made up.
GITHUB = {".nameWithOwner": "example-org/sdturbo-serve", ".owner.id": "1234567", ".id": "7654321"}
REPOSITORY = GITHUB[".nameWithOwner"]
# The state's key: infra/backend.tf's (CI's init could also pass one).
STATE_KEY = workflows.backend_settings(workflows.load("deploy-infrastructure.yml")["jobs"]["plan"]).get("key") or \
    re.search(r'key\s*=\s*"([^"]+)"', (REPO / "infra" / "backend.tf").read_text()).group(1)
VARIANT = "AllTraffic"
WORK = REPO / "build" / "infra-emulator"  # scratch roots, Terraform's logs and outputs, timings.json
# What an administrator's teardown does that the apply role must not: delete the data in the buckets, and
# schedule the stack key's deletion (everything it encrypts becomes unreadable: data deletion too).
ADMINISTRATOR_ONLY = {("S3", "ListObjectVersions"), ("S3", "ListObjectsV2"), ("S3", "DeleteObjects"),
                      ("S3", "DeleteObject"), ("KMS", "ScheduleKeyDeletion")}
# What only the administrator's first apply does (infra/README.md step 3): take over the VPC's default
# security group, which AWS creates untagged, and tag it; the apply role may change only tagged network.
FIRST_APPLY_ONLY = {"aws_default_security_group"}


class NotReached(Exception):
    """A step after a failed one."""


@dataclass
class Cycle:
    emulator: Emulator
    work: Path
    runs: dict[str, Run] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    failed: str = ""  # the first step that failed
    # The runbook's shell variables: its literals (step 0), and the image tag step 4 would read from GitHub.
    shell: dict[str, str] = field(default_factory=lambda: {**runbook.shell_values(), "IMAGE_TAG": "1" * 40})
    variables: dict[str, str] = field(default_factory=dict)  # the cycle's own, beside what CI passes

    # ---------------------------------------------------------------- emulator access (boto3, as a client)
    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.emulator.url,
                            aws_access_key_id="emulator", aws_secret_access_key="emulator")

    def role_policies(self, role: str) -> list[dict]:
        iam = self.client("iam")
        documents = []
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
            documents.append(_document(version["PolicyVersion"]["Document"]))
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            documents.append(_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]))
        return documents

    def endpoint_state(self) -> dict:
        sagemaker = self.client("sagemaker")
        endpoint = sagemaker.describe_endpoint(EndpointName=NAME)
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        targets = self.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
        policies = self.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
        return {
            "model": config["ProductionVariants"][0]["ModelName"],
            "environment": sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
            ["PrimaryContainer"].get("Environment", {}),
            "concurrency": config["AsyncInferenceConfig"]["ClientConfig"]["MaxConcurrentInvocationsPerInstance"],
            "instance_type": config["ProductionVariants"][0]["InstanceType"],
            "desired_count": endpoint["ProductionVariants"][0].get("DesiredInstanceCount"),
            "models": sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]),
            "scaling_targets": [t["ResourceId"] for t in targets["ScalableTargets"]],
            "scaling_policies": sorted(p["PolicyName"] for p in policies["ScalingPolicies"]),
        }

    # ---------------------------------------------------------------- steps
    def step(self, run: Run) -> Run:
        self.runs[run.name] = run
        if not run.ok and not self.failed:
            self.failed = run.name
        if not run.ok:
            raise NotReached(run.name)
        return run

    def var_args(self) -> list[str]:
        """What CI's plan passes (its TF_VAR_* from repository variables), then the cycle's own."""
        values = {**self.ci_variables(), **self.variables}
        return [f"-var={key}={value}" for key, value in sorted(values.items())]

    def ci_variables(self) -> dict[str, str]:
        job = workflows.load("deploy-infrastructure.yml")["jobs"]["plan"]
        return {name: self.repository_variable(workflows.repository_variable(expression))
                for name, expression in workflows.terraform_variables(job).items()}

    def repository_variable(self, name: str) -> str:
        """The value the runbook gives a repository variable (step 2's `gh variable set`), in this cycle."""
        return self.runbook_value(runbook.repository_variables()[name])

    def runbook_value(self, word: str) -> str:
        """What a word of the runbook stands for here: a bootstrap output, a shell variable, a literal."""
        if word.startswith("$("):
            root, output = runbook.terraform_output(word)
            assert root == "infra/bootstrap", word  # the stack's own outputs are not needed before it exists
            return self.facts["bootstrap"][output]
        return self.shell[word[1:]] if word.startswith("$") else word

    def deploy(self, name: str, image_tag: str | None = None, **changes: str) -> None:
        """What deploy-infrastructure.yml does: plan with the plan role, apply that plan with the apply role."""
        if image_tag:
            self.shell["IMAGE_TAG"] = image_tag  # step 10: IMAGE_TAG set to a new image's tag
        self.variables.update(changes)
        self.variables["deploy_instance_count"] = self.deploy_instance_count()
        self.step(self.main.run(f"{name}-plan", "plan", "plan", "-no-color", "-lock-timeout=60s", "-out=tfplan",
                                *self.var_args()))
        self.runs[f"{name}-plan"].operations.append(self.count_request)
        self.step(self.main.run(f"{name}-apply", "apply", "apply", "-no-color", "-lock-timeout=60s", "tfplan"))
        self.facts[name] = {**self.endpoint_state(), "image_tag": self.shell["IMAGE_TAG"], "lifecycle": json.loads(
            self.client("ecr").get_lifecycle_policy(repositoryName=NAME)["lifecyclePolicyText"])}

    def deploy_instance_count(self) -> str:
        """scripts/deploy_instance_count.py, as the plan job runs it (against the emulator)."""
        env = {**os.environ, "AWS_ENDPOINT_URL": self.emulator.url, "AWS_ACCESS_KEY_ID": "emulator",
               "AWS_SECRET_ACCESS_KEY": "emulator", "AWS_EC2_METADATA_DISABLED": "true"}
        result = subprocess.run([sys.executable, str(REPO / "scripts" / "deploy_instance_count.py"), "--endpoint",
                                 NAME, "--region", REGION], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    @property
    def count_request(self) -> Operation:
        # The script's one request, under the plan role: it is not in Terraform's log.
        return Operation("SageMaker", "DescribeEndpoint", "POST", self.emulator.url,
                         json.dumps({"EndpointName": NAME}), "", "scripts/deploy_instance_count.py")

    def run_all(self) -> None:
        bootstrap = Root(REPO / "infra" / "bootstrap", self.work / "bootstrap", self.emulator.url, self.work / "logs")
        bootstrap.write("terraform.tfvars", self.bootstrap_variables())
        self.step(bootstrap.init("bootstrap-init", "admin"))
        self.step(bootstrap.run("bootstrap-apply", "admin", "apply", "-auto-approve", "-no-color"))
        outputs = json.loads(bootstrap.run("bootstrap-outputs", "admin", "output", "-json").output)
        self.facts["bootstrap"] = {key: value["value"] for key, value in outputs.items()}

        self.main = Root(REPO / "infra", self.work / "main", self.emulator.url, self.work / "logs")
        self.facts["ci_backend"] = self.ci_backend_settings()
        self.main.write("ci.s3.tfbackend", backend_config(self.emulator.url, self.facts["ci_backend"]))
        self.step(self.main.init("main-init", "plan", "-backend-config=ci.s3.tfbackend"))
        self.first_apply()
        self.publish_model()
        self.deploy("create")
        state = self.client("s3").head_object(Bucket=self.facts["bootstrap"]["state_bucket"], Key=STATE_KEY)
        self.facts["state_object"] = {key: state.get(key) for key in ("ServerSideEncryption", "SSEKMSKeyId")}
        self.held_lock()

        self.facts["policies"] = {role: self.role_policies(f"{NAME}-github-{role}")
                                  for role in ("plan", "apply", "image-push")}
        self.facts["trust"] = {role: self.client("iam").get_role(RoleName=f"{NAME}-github-{role}")["Role"]
                               ["AssumeRolePolicyDocument"] for role in ("plan", "apply", "image-push")}
        boundary_arn = self.facts["bootstrap"]["workload_boundary_arn"]
        policy = self.client("iam").get_policy(PolicyArn=boundary_arn)["Policy"]
        self.facts["boundary"] = _document(self.client("iam").get_policy_version(
            PolicyArn=boundary_arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"])

        role = self.client("iam").get_role(RoleName=f"{NAME}-sagemaker-execution")["Role"]
        self.facts["workload_role_boundary"] = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
        self.facts["workload_policy"] = self.role_policies(f"{NAME}-sagemaker-execution")
        self.smoke_calls()

        self.step(self.main.run("replan", "plan", "plan", "-no-color", "-detailed-exitcode", "-lock-timeout=60s",
                                *self.var_args()))

        # SDXL-turbo, the production model, on the default instance type: its profile replaces the model.
        self.deploy("sdxl-turbo", model="sdxl-turbo")
        # Autoscaling has taken the endpoint to two instances when the next image is deployed.
        self.client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=NAME, DesiredWeightsAndCapacities=[{"VariantName": VARIANT, "DesiredInstanceCount": 2}])
        self.deploy("image-tag", image_tag="2" * 40)
        self.deploy("instance-type", instance_type="ml.g4dn.xlarge")
        # The SNS interface endpoint (private DNS), as step 8 may find an account needs it, and off again.
        self.deploy("sns-endpoint-on", enable_sns_endpoint="true")
        self.facts["sns_endpoints"] = self.sns_endpoints()
        self.deploy("sns-endpoint-off", enable_sns_endpoint="false")
        self.facts["sns_endpoints_after"] = self.sns_endpoints()

        self.teardown(bootstrap)

    def bootstrap_variables(self) -> str:
        """infra/bootstrap/terraform.tfvars as step 1 writes it: its heredoc, with the shell's values and what
        GitHub answers its `gh` commands."""
        (command,) = [c for c in runbook.step("1.").commands if c.writes == ("infra/bootstrap/terraform.tfvars",)]
        text = command.stdin
        for inner in runbook.substitutions(text):
            (gh,) = runbook.parse(inner, "")
            assert gh.program == "gh", inner
            text = text.replace(f"$({inner})", GITHUB[gh.flag("--jq")])
        return re.sub(r"\$(\w+)", lambda m: self.shell[m.group(1)], text)

    def ci_backend_settings(self) -> dict[str, str]:
        """The -backend-config settings of deploy-infrastructure.yml's init, each repository variable replaced
        by what the runbook sets it to."""
        settings = workflows.backend_settings(workflows.load("deploy-infrastructure.yml")["jobs"]["plan"])
        return {key: self.repository_variable(workflows.repository_variable(value))
                if workflows.repository_variable(value) else value for key, value in settings.items()}

    def held_lock(self) -> None:
        """A plan while another run holds the state lock (its lock object, beside the state) must not start."""
        s3, bucket, lock = self.client("s3"), self.facts["bootstrap"]["state_bucket"], f"{STATE_KEY}.tflock"
        holder = {"ID": "11111111-2222-3333-4444-555555555555", "Operation": "OperationTypeApply",
                  "Who": "someone@elsewhere", "Version": "1.11.4", "Created": "2026-12-01T00:00:00Z",
                  "Path": f"{bucket}/{STATE_KEY}", "Info": ""}
        s3.put_object(Bucket=bucket, Key=lock, Body=json.dumps(holder).encode())
        try:
            self.runs["held-lock-plan"] = self.main.run("held-lock-plan", "plan", "plan", "-no-color",
                                                        "-lock-timeout=2s", *self.var_args())
        finally:
            s3.delete_object(Bucket=bucket, Key=lock)

    def sns_endpoints(self) -> list[dict]:
        endpoints = self.client("ec2").describe_vpc_endpoints(
            Filters=[{"Name": "service-name", "Values": [f"com.amazonaws.{REGION}.sns"]}])["VpcEndpoints"]
        return [{"type": e["VpcEndpointType"], "private_dns": e.get("PrivateDnsEnabled"), "state": e.get("State")}
                for e in endpoints if e.get("State", "").lower() not in ("deleted", "deleting")]

    # ---------------------------------------------------------------- the runbook (infra/README.md), as written
    def first_apply(self) -> None:
        """Step 3: the repository and buckets, with no image_tag. An administrator runs it; it is held
        against the apply role's policy, so the apply role's trace still covers creating them."""
        (command,) = [c for c in runbook.step("3.").commands if c.values("-target")]
        self.step(self.main.run("first-apply", "apply", *runbook.terraform_args(command), "-auto-approve",
                                "-no-color", "-lock-timeout=60s"))
        self.facts["first-apply"] = {
            "repositories": [r["repositoryName"] for r in self.client("ecr").describe_repositories()["repositories"]],
            "buckets": sorted(b["Name"] for b in self.client("s3").list_buckets()["Buckets"] if "tfstate" not in b["Name"]),
            "models": self.client("sagemaker").list_models()["Models"],
            "outputs": sorted(json.loads(self.main.run("first-outputs", "admin", "output", "-json").output)),
        }

    def publish_model(self) -> None:
        """Step 5's upload, as written, of a stand-in archive folder to the bucket the first apply made."""
        archive = self.work / "model-store" / "sdturbo"
        (archive / "MAR-INF").mkdir(parents=True)
        (archive / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": {"modelName": NAME}}))
        (archive / "handler.py").write_text("# stand-in\n")
        (command,) = [c for c in runbook.step("5.").commands
                      if runbook.script_call(c) and "--dry-run" not in c.argv]
        script, args = runbook.script_call(command)
        self.script("publish", "admin", [str(script), *self.substitute(args, {"model-store/sdturbo": str(archive)})])

    def smoke_calls(self) -> None:
        """Step 8's calls, as written, each AWS call recorded: one answered with an image, the same call
        answered with a failure (the client polls an output that never comes), one queued without waiting
        and, once the `result` subcommand exists, fetched by its id. Step 9's subscriptions are read as
        requests too: with these they are what the caller policy must allow."""
        commands = [c for c in runbook.step("8.").commands if runbook.script_call(c)]
        waited = [c for c in commands if "async" in c.argv and "--no-wait" not in c.argv]
        queued = [c for c in commands if "--no-wait" in c.argv]
        fetch = [c for c in commands if "result" in c.argv]
        assert len(waited) == len(queued) == len(fetch) == 1, [c.argv for c in commands]
        log = self.work / "caller-calls.jsonl"
        outputs = {k: v["value"] for k, v in json.loads(self.main.run("outputs", "admin", "output", "-json").output).items()}
        variables = self.smoke_queue(outputs)
        failure = {"is_failure": True, "data": json.dumps(
            {"code": 400, "type": "InvalidRequest", "message": "invalid request: prompt: too long"})}
        # A scaling step, as Application Auto Scaling takes: SageMaker sends its test notification to both
        # topics, so the smoke queue holds two before the first call.
        self.client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=NAME, DesiredWeightsAndCapacities=[{"VariantName": VARIANT, "DesiredInstanceCount": 1}])
        self.facts["test_notifications_queued"] = self.queue_events(variables["$SMOKE_QUEUE_URL"])
        self.queue_async_result({"data": json.dumps(png_reply(seed=42))})
        self.invoke("smoke-call", waited[0], log, variables=variables)
        self.queue_async_result(failure)
        self.invoke("smoke-call-failure", waited[0], log, expect=1, variables=variables)
        # The same call by a client that polls S3 instead (step 9: an application without a queue).
        polling = runbook.Command(tuple(w for i, w in enumerate(waited[0].argv) if "--sqs-queue" not in
                                        waited[0].argv[max(i - 1, 0):i + 1]), waited[0].step)
        self.queue_async_result(failure)
        self.invoke("smoke-call-polling", polling, log, expect=1)
        # A queue nothing publishes to: the call must say the notification is missing and name the setting.
        silent = self.client("sqs").create_queue(QueueName="silent")["QueueUrl"]
        self.queue_async_result({"data": json.dumps(png_reply(seed=42))})
        self.invoke("smoke-call-no-notification", runbook.Command(waited[0].argv + ("--timeout", "3"), waited[0].step),
                    log, expect=3, variables={**variables, "$SMOKE_QUEUE_URL": silent})
        self.queue_async_result({"data": json.dumps(png_reply(seed=7))})
        queued_output = self.invoke("queued-call", queued[0], log).output
        inference_id = json.loads(queued_output.split("\n", 1)[1].splitlines()[0])["inference_id"]
        script, args = runbook.script_call(fetch[0])
        self.facts["result_subcommand"] = subprocess.run(
            [sys.executable, str(script), "result", "--help"], capture_output=True).returncode == 0
        if self.facts["result_subcommand"]:  # issue 14's client work; strict once both branches are merged
            self.invoke("fetched-result", fetch[0], log, positional=inference_id)
        subscriptions = []
        for command in [c for c in runbook.step("9.").commands if c.argv[:3] == ("aws", "sns", "subscribe")]:
            subscriptions.append(Operation("SNS", "Subscribe", "POST", "", json.dumps({
                "TopicArn": outputs[runbook.raw_output(command.flag("--topic-arn"))], "Protocol": command.flag("--protocol"),
                "Endpoint": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:app-results"}), "", "infra/README.md step 9"))
        self.facts["caller"] = {"calls": aws_calls.calls(log), "subscriptions": subscriptions, "outputs": outputs,
                                "policy": json.loads(outputs["caller_policy_json"])}
        self.facts["smoke_queue_left"] = self.queue_events(variables["$SMOKE_QUEUE_URL"])

    def queue_events(self, queue_url: str) -> list[dict]:
        """The events (SNS messages) waiting on a queue, left on it."""
        sqs, found = self.client("sqs"), []
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           VisibilityTimeout=0).get("Messages", []):
            found.append(json.loads(json.loads(message["Body"])["Message"]))
        return found

    def smoke_queue(self, outputs: dict) -> dict[str, str]:
        """Step 8's queue, as written: created, its policy (the runbook's heredoc) set, subscribed to the
        topics the step names. Returns the shell variables the smoke call reads."""
        commands = runbook.step("8.").commands
        variables = {f"${name}": outputs[runbook.raw_output(value)] for c in commands for name, value in c.assignments
                     if value.startswith("$(terraform")}
        sqs = self.client("sqs")
        (create,) = [c for c in commands if c.argv[:3] == ("aws", "sqs", "create-queue")]
        variables["$SMOKE_QUEUE_URL"] = sqs.create_queue(QueueName=create.flag("--queue-name"))["QueueUrl"]
        variables["$SMOKE_QUEUE_ARN"] = sqs.get_queue_attributes(
            QueueUrl=variables["$SMOKE_QUEUE_URL"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        (policy,) = [c for c in commands if c.writes and c.writes[0].endswith(".json") and c.stdin]
        text = policy.stdin
        for name, value in sorted(variables.items(), reverse=True):
            text = text.replace(name, value)
        sqs.set_queue_attributes(QueueUrl=variables["$SMOKE_QUEUE_URL"], Attributes=json.loads(text))
        for command in [c for c in commands if c.argv[:3] == ("aws", "sns", "subscribe")]:
            self.client("sns").subscribe(TopicArn=variables[command.flag("--topic-arn")],
                                         Protocol=command.flag("--protocol"),
                                         Endpoint=variables[command.flag("--notification-endpoint")])
        self.facts["smoke_queue"] = json.loads(json.loads(text)["Policy"])
        return variables

    def teardown(self, bootstrap: Root) -> None:
        """The runbook's teardown of the stack (step 3) and the bootstrap (step 4), as written."""
        self.facts["objects_before_teardown"] = {
            bucket: self.client("s3").list_object_versions(Bucket=bucket).get("Versions", [])
            for bucket in (self.facts["caller"]["outputs"]["artifacts_bucket"], self.facts["caller"]["outputs"]["async_bucket"])}
        flags = ["-auto-approve", "-no-color", "-lock-timeout=60s", *self.var_args()]
        unguard, destroy = [c for c in runbook.step("3.", runbook.TEARDOWN).commands if c.program == "terraform"]
        self.step(self.main.run("teardown-buckets", "admin", *runbook.terraform_args(unguard), *flags))
        self.step(self.main.run("main-destroy", "admin", *runbook.terraform_args(destroy), *flags))
        self.facts["left_after_destroy"] = self.leftovers()

        steps = runbook.step("4.", runbook.TEARDOWN).commands
        (override,) = [c for c in steps if c.writes and c.writes[0].endswith("_override.tf")]
        bootstrap.write(Path(override.writes[0]).name, override.stdin)
        unguard, destroy = [c for c in steps if c.program == "terraform"]
        flags = ["-auto-approve", "-no-color"]  # the variables: step 1's terraform.tfvars, in the root
        self.step(bootstrap.run("bootstrap-unguard", "admin", *runbook.terraform_args(unguard), *flags))
        self.step(bootstrap.run("bootstrap-destroy", "admin", *runbook.terraform_args(destroy), *flags))
        self.facts["left_after_bootstrap_destroy"] = {
            "buckets": [b["Name"] for b in self.client("s3").list_buckets().get("Buckets", [])],
            "tables": self.client("dynamodb").list_tables()["TableNames"]}

    # ---------------------------------------------------------------- clients run as the runbook runs them
    def client_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TF_"))}
        return {**env, "AWS_ENDPOINT_URL": self.emulator.url, "AWS_ACCESS_KEY_ID": "emulator",
                "AWS_SECRET_ACCESS_KEY": "emulator", "AWS_EC2_METADATA_DISABLED": "true"}

    def substitute(self, args: list[str], paths: dict[str, str], positional: str | None = None,
                   variables: dict[str, str] | None = None) -> list[str]:
        """The runbook's arguments with its folders replaced: infra -> the scratch root, --out -> WORK; and
        its shell variables ($NAME) with their values."""
        out = []
        for index, arg in enumerate(args):
            previous = args[index - 1] if index else ""
            if previous == "--from-terraform":
                arg = str(self.main.path)
            elif previous == "--out":
                arg = str(self.work / arg)
            elif arg.startswith("$(") and positional is not None:
                arg = positional
            arg = (variables or {}).get(arg, arg)
            out.append(paths.get(arg, arg))
        return out

    def script(self, name: str, role: str, argv: list[str], expect: int = 0) -> Run:
        started = time.monotonic()
        result = subprocess.run([sys.executable, *argv], env=self.client_env(), capture_output=True, text=True,
                                timeout=300, cwd=REPO)
        output = f"exit {result.returncode} (expected {expect}):\n{result.stdout}\n{result.stderr}"
        return self.step(Run(name, role, argv, 0 if result.returncode == expect else 1, output,
                             time.monotonic() - started))

    def invoke(self, name: str, command: runbook.Command, log: Path, expect: int = 0,
               positional: str | None = None, variables: dict[str, str] | None = None) -> Run:
        script, args = runbook.script_call(command)
        argv = [str(REPO / "tests" / "support" / "aws_calls.py"), str(log), str(script),
                *self.substitute(args, {}, positional, variables)]
        return self.script(name, "caller", argv, expect)

    def queue_async_result(self, result: dict) -> None:
        """What the endpoint answers the next InvokeEndpointAsync with (moto's API for it)."""
        body = json.dumps({"results": [result], "account_id": ACCOUNT_ID, "region": REGION}).encode()
        request = urllib.request.Request(f"{self.emulator.url}/moto-api/static/sagemaker/async-endpoint-results",
                                         data=body, method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def leftovers(self) -> dict[str, list[str]]:
        return {
            "models": [m["ModelName"] for m in self.client("sagemaker").list_models()["Models"]],
            "endpoints": [e["EndpointName"] for e in self.client("sagemaker").list_endpoints()["Endpoints"]],
            "vpcs": [v["VpcId"] for v in self.client("ec2").describe_vpcs(
                Filters=[{"Name": "tag:Project", "Values": [NAME]}])["Vpcs"]],
            "scaling_targets": [t["ResourceId"] for t in self.client("application-autoscaling")
                                .describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]],
            "buckets": [b["Name"] for b in self.client("s3").list_buckets().get("Buckets", [])
                        if not b["Name"].startswith(f"{NAME}-tfstate-")],
        }

    def require(self, *names: str) -> list[Run]:
        """The runs a test reads; fails the test with the cause when one failed or was never reached."""
        runs = []
        for name in names:
            run = self.runs.get(name)
            if run is None:
                pytest.fail(f"step {name} was not reached: step {self.failed} failed:\n"
                            f"{self.runs[self.failed].tail() if self.failed in self.runs else self.facts.get('error')}")
            assert run.ok, run.tail()
            runs.append(run)
        return runs

    def by_administrator(self, operation: Operation) -> bool:
        """Requests of an apply-role run that the runbook has an administrator send instead."""
        return operation.resource_type in FIRST_APPLY_ONLY and operation in self.first_apply_operations

    @property
    def first_apply_operations(self) -> list[Operation]:
        return self.runs["first-apply"].operations if "first-apply" in self.runs else []

    def operations(self, role: str) -> list[Operation]:
        found = [op for run in self.runs.values() if run.role == role for op in run.operations]
        if role == "apply" and "main-destroy" in self.runs:
            # An administrator runs the teardown; the apply role could run all of it but the data's deletion
            # (test_apply_role_could_destroy_the_stack_but_not_its_data).
            found += [op for op in self.runs["main-destroy"].operations
                      if (op.service, op.name) not in ADMINISTRATOR_ONLY]
        return found


def png_reply(seed: int, size: tuple[int, int] = (64, 48)) -> dict:
    """A reply as the handler writes it: a PNG, base64."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "seed": seed, "width": size[0],
            "height": size[1], "format": "png"}


def _document(document) -> dict:
    """A policy document as IAM returns it: parsed already, or URL-encoded JSON."""
    if isinstance(document, dict):
        return document
    return json.loads(unquote(document) if document.lstrip().startswith("%7B") else document)


@pytest.fixture(scope="module")
def cycle():
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    started = time.monotonic()
    with Emulator(WORK / "emulator.log") as emulator:
        result = Cycle(emulator, WORK)
        try:
            result.run_all()
        except NotReached:
            pass
        except Exception as exc:  # a failure of the harness itself: every test reports it
            result.failed = result.failed or "harness"
            result.facts["error"] = f"{type(exc).__name__}: {exc}"
    (WORK / "timings.json").write_text(json.dumps({"total_s": round(time.monotonic() - started, 1),
                                   **{name: round(run.seconds, 1) for name, run in result.runs.items()}}, indent=1))
    yield result


def account(cycle: Cycle) -> iam_policy.Account:
    """The account as the CI roles' requests find it: what the bootstrap made (which key encrypts the state
    bucket's objects, or a table's items, its tags) is learnt from the administrator's trace of it."""
    found = iam_policy.Account(region=REGION, account_id=ACCOUNT_ID)
    for operation in cycle.runs["bootstrap-apply"].operations:
        iam_policy.learn(found, operation)
    return found


# ------------------------------------------------------------------ the cycle

def test_bootstrap_applies(cycle):
    cycle.require("bootstrap-init", "bootstrap-apply")


def test_stack_applies_from_the_plan_role_s_plan(cycle):
    cycle.require("main-init", "create-plan", "create-apply")
    assert cycle.facts["create"]["scaling_targets"] == [f"endpoint/{NAME}/variant/{VARIANT}"]
    assert len(cycle.facts["create"]["scaling_policies"]) == 2


def test_replan_shows_no_changes(cycle):
    (run,) = cycle.require("replan")  # -detailed-exitcode: 0 means no changes, 2 means changes
    assert "No changes." in run.output


def test_sdxl_turbo_profile_deploys_on_the_default_instance_type_as_a_new_model(cycle):
    cycle.require("sdxl-turbo-plan", "sdxl-turbo-apply")
    before, after = cycle.facts["create"], cycle.facts["sdxl-turbo"]
    assert after["model"] != before["model"]
    assert after["models"] == [after["model"]]  # the old model is gone once the endpoint switched
    assert after["instance_type"] == before["instance_type"] == "ml.g4dn.2xlarge"
    sizing = {key: value for key, value in after["environment"].items()
              if key.startswith("SDTURBO_") or key == "SAGEMAKER_MODEL_SERVER_WORKERS"}
    assert sizing == {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SDTURBO_DEVICE": "cuda",
                      "SDTURBO_MAX_GPU_MEMORY_GIB": "14", "SDTURBO_CUDA_GRAPHS": "false",
                      "SDTURBO_VAE_DECODE_BATCH": "2"}, sizing
    assert (before["concurrency"], after["concurrency"]) == (16, 8)  # workers x batch, each from its profile


def test_image_deploy_keeps_the_instance_count_autoscaling_chose(cycle):
    cycle.require("image-tag-plan", "image-tag-apply")
    assert cycle.facts["image-tag"]["model"] != cycle.facts["sdxl-turbo"]["model"]
    assert cycle.facts["image-tag"]["desired_count"] == 2


def test_first_deploy_starts_one_instance(cycle):
    cycle.require("create-apply")
    assert cycle.facts["create"]["desired_count"] == 1


def test_instance_type_change_deregisters_and_registers_the_variant(cycle):
    cycle.require("instance-type-plan", "instance-type-apply")
    state = cycle.facts["instance-type"]
    assert state["instance_type"] == "ml.g4dn.xlarge"
    assert state["scaling_targets"] == [f"endpoint/{NAME}/variant/{VARIANT}"]
    assert state["scaling_policies"] == cycle.facts["create"]["scaling_policies"]


def test_runbook_teardown_empties_the_buckets_and_destroys_the_stack(cycle):
    cycle.require("teardown-buckets", "main-destroy")
    # Both buckets held objects (model data in versions, async requests and results): the plain destroy
    # of force_destroy_buckets = false would have stopped at them.
    assert all(cycle.facts["objects_before_teardown"].values()), cycle.facts["objects_before_teardown"]
    assert cycle.facts["left_after_destroy"] == {"models": [], "endpoints": [], "vpcs": [], "scaling_targets": [],
                                                 "buckets": []}


def test_runbook_teardown_lifts_the_bootstrap_s_guards_and_destroys_it(cycle):
    cycle.require("bootstrap-unguard", "bootstrap-destroy")
    assert cycle.facts["left_after_bootstrap_destroy"] == {"buckets": [], "tables": []}


def test_apply_role_could_destroy_the_stack_but_not_its_data_nor_its_key(cycle):
    """The teardown is an administrator's: deleting the buckets' data, and scheduling the stack key's deletion,
    which makes everything it encrypts unreadable. Everything else of the destroy the apply role could do."""
    (destroy,) = cycle.require("main-destroy")
    # In order after the apply role's own runs: what they created (a role's boundary) decides the destroy's context.
    applied = [op for run in cycle.runs.values() if run.role == "apply" for op in run.operations]
    refused = iam_policy.refusals(cycle.facts["policies"]["apply"], applied + destroy.operations, account(cycle),
                                  by_others=cycle.by_administrator)
    operations = {r.operation for r in refused}
    assert {"S3 DeleteObjects", "KMS ScheduleKeyDeletion"} <= operations, [r.describe() for r in refused]
    assert operations <= {f"{service} {name}" for service, name in ADMINISTRATOR_ONLY}, \
        [r.describe() for r in refused]


# ------------------------------------------------------------------ the state and its lock

def test_ci_locks_the_state_with_an_object_beside_it(cycle):
    """CI's init (deploy-infrastructure.yml's settings and infra/backend.tf) locks with a lock object: the plan
    role writes `<key>.tflock` and deletes it again, and no run asks DynamoDB for anything."""
    (plan,) = cycle.require("create-plan")
    lock = f"/{cycle.facts['bootstrap']['state_bucket']}/{STATE_KEY}.tflock"
    sent = [(op.name, unquote(op.url.split("?")[0])) for op in plan.operations if op.service == "S3"]
    assert ("PutObject", lock) in [(name, url[-len(lock):]) for name, url in sent], sent
    assert ("DeleteObject", lock) in [(name, url[-len(lock):]) for name, url in sent], sent
    asked = {op.name for run in cycle.runs.values() if run.role in ("plan", "apply") for op in run.operations
             if op.service == "DynamoDB"}
    assert not asked, asked


def test_a_held_lock_stops_a_plan(cycle):
    """While another run's lock object is there, a plan of the plan role does not start."""
    cycle.require("create-apply")
    run = cycle.runs["held-lock-plan"]
    assert not run.ok and "Error acquiring the state lock" in run.output, run.tail()


def test_the_state_is_encrypted_with_the_state_key(cycle):
    """With `encrypt = true` alone the S3 backend sends SSE-S3 (AES256), which overrides the bucket's KMS
    default: CI's init must name the state key."""
    cycle.require("create-apply")
    assert cycle.facts["state_object"] == {"ServerSideEncryption": "aws:kms",
                                           "SSEKMSKeyId": cycle.facts["bootstrap"]["state_kms_key_arn"]}
    assert cycle.facts["ci_backend"]["kms_key_id"] == cycle.facts["bootstrap"]["state_kms_key_arn"]


# ------------------------------------------------------------------ what the stack keeps

@pytest.mark.parametrize("deploy", ["create", "image-tag"])
def test_the_live_image_outlives_any_number_of_pushes(cycle, deploy):
    """The ECR lifecycle policy as applied, played over pushes after a deploy (ECR's documented evaluation,
    tests/support/ecr_lifecycle.py): 30 images pushed after the deployed one, none of them deployed."""
    cycle.require(f"{deploy}-apply")
    facts = cycle.facts[deploy]
    live = ecr_lifecycle.Image((facts["image_tag"],), pushed_days_ago=31)
    pushed = [ecr_lifecycle.Image((f"{n:040x}",), pushed_days_ago=30 - n) for n in range(30)]
    untagged = ecr_lifecycle.Image((), pushed_days_ago=8)  # an interrupted push
    gone = ecr_lifecycle.expired(facts["lifecycle"], [live, *pushed, untagged])
    assert live not in gone
    assert untagged in gone and len([image for image in pushed if image not in gone]) >= 9, gone


# ------------------------------------------------------------------ the runbook's first deploy

def test_first_apply_needs_no_image_and_makes_the_repository_and_buckets(cycle):
    cycle.require("first-apply")  # run without image_tag: nothing it creates needs an image
    facts = cycle.facts["first-apply"]
    assert facts["repositories"] == [NAME] and not facts["models"]
    assert facts["buckets"] == [f"{NAME}-artifacts-{ACCOUNT_ID}-{REGION}", f"{NAME}-async-{ACCOUNT_ID}-{REGION}"]
    # What steps 4 and 5 read right after it.
    assert {"ecr_repository_url", "ecr_repository_name", "model_data_uri", "region"} <= set(facts["outputs"])


def test_model_data_uploads_to_the_bucket_the_first_apply_made(cycle):
    cycle.require("publish")
    artifacts = cycle.facts["objects_before_teardown"][f"{NAME}-artifacts-{ACCOUNT_ID}-{REGION}"]
    assert {"models/sdturbo/v1/MAR-INF/MANIFEST.json", "models/sdturbo/v1/handler.py"} <= {o["Key"] for o in artifacts}


def test_runbook_promises_what_terraform_prints(cycle):
    promised = {("1.", runbook.FIRST_DEPLOY): ["bootstrap-apply"], ("3.", runbook.FIRST_DEPLOY): ["first-apply"],
                ("6.", runbook.FIRST_DEPLOY): ["create-plan", "create-apply"],
                ("3.", runbook.TEARDOWN): ["teardown-buckets", "main-destroy"],
                ("4.", runbook.TEARDOWN): ["bootstrap-unguard", "bootstrap-destroy"]}
    for (title, section), names in promised.items():
        lines = runbook.success_lines(runbook.step(title, section))
        printed = "".join(run.output for run in cycle.require(*names))
        assert len(lines) == len(names), (title, section, lines)
        for line in lines:
            assert line in printed, f"{section} {title} promises {line!r}; Terraform printed otherwise"


def test_smoke_call_writes_the_image_and_reports_a_failure(cycle):
    _, failure = cycle.require("smoke-call", "smoke-call-failure")
    from PIL import Image

    assert Image.open(WORK / "cat.png").format == "PNG"
    assert "prompt: too long" in failure.output and "Traceback" not in failure.output


def test_queued_request_is_fetched_by_its_id(cycle):
    cycle.require("queued-call")
    if not cycle.facts["result_subcommand"]:
        return  # `invoke.py result` comes with issue 14's client work; from then on this runs it
    cycle.require("fetched-result")
    from PIL import Image

    assert Image.open(WORK / "lighthouse.png").format == "PNG"


# ------------------------------------------------------------------ IAM: the caller policy (runbook step 9)

def caller_permissions(cycle: Cycle) -> list[Permission]:
    """What IAM checks for the smoke calls' requests and the subscriptions, in order."""
    caller = cycle.facts["caller"]
    outputs = caller["outputs"]
    account = iam_policy.Account(region=REGION, account_id=ACCOUNT_ID,
                                 sse_kms_keys={outputs["async_bucket"]: outputs["kms_key_arn"]})
    # The queue a caller waits on is the application's own (step 8's, step 9's): its use is the
    # application's to allow, not the stack's caller policy.
    stack_calls = [c for c in caller["calls"] if c["service"] != "SQS"]
    requests = aws_calls.operations(stack_calls, "scripts/invoke.py") + caller["subscriptions"]
    needed = [permission for permission, _ in iam_policy.checked(requests, account)]
    for bucket in sorted(set(aws_calls.missing_objects(stack_calls))):
        needed.append(Permission("s3:ListBucket", f"arn:aws:s3:::{bucket}", (("aws:RequestedRegion", REGION),),
                                 because="S3 GetObject of a result not written yet (404 only with ListBucket)"))
    return needed


def test_smoke_calls_send_each_kind_of_request(cycle):
    cycle.require("smoke-call", "smoke-call-failure", "smoke-call-polling", "queued-call")
    sent = {(c["service"], c["operation"], c["error"]) for c in cycle.facts["caller"]["calls"]}
    assert {("S3", "PutObject", None), ("SageMaker Runtime", "InvokeEndpointAsync", None), ("S3", "GetObject", None),
            ("S3", "GetObject", "NoSuchKey")} <= sent, sent


def test_caller_policy_allows_every_request_of_an_async_call(cycle):
    cycle.require("smoke-call", "smoke-call-failure", "smoke-call-polling", "queued-call")
    policy = cycle.facts["caller"]["policy"]
    refused = [p for p in caller_permissions(cycle) if not iam_policy.allowed([policy], p)]
    assert not refused, "the caller policy refuses:\n  " + "\n  ".join(
        f"{p.action} on {p.resource} ({p.because or 'request'})" for p in refused)


def test_removing_any_caller_statement_is_caught(cycle):
    cycle.require("smoke-call", "smoke-call-failure", "smoke-call-polling", "queued-call")
    policy, needed = cycle.facts["caller"]["policy"], caller_permissions(cycle)
    statements = iam_policy.statements([policy])
    assert len(statements) == 6
    unnoticed = [s["Sid"] for s in statements if all(iam_policy.allowed(
        [{**policy, "Statement": [o for o in statements if o is not s]}], p) for p in needed)]
    assert not unnoticed, f"removing these statements went unnoticed: {unnoticed}"


def test_caller_policy_allows_nothing_beyond_an_async_call(cycle):
    cycle.require("smoke-call")
    outputs, policy = cycle.facts["caller"]["outputs"], cycle.facts["caller"]["policy"]
    async_bucket, artifacts = f"arn:aws:s3:::{outputs['async_bucket']}", f"arn:aws:s3:::{outputs['artifacts_bucket']}"
    endpoint = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:endpoint/{outputs['endpoint_name']}"
    key, via_s3 = outputs["kms_key_arn"], ("kms:ViaService", f"s3.{REGION}.amazonaws.com")
    refused = [  # what a caller might try -> it must not be allowed
        ("s3:GetObject", f"{async_bucket}/async-input/someone-else.json", ()),  # other callers' prompts
        ("s3:PutObject", f"{async_bucket}/async-output/forged.out", ()),  # forging results
        ("s3:DeleteObject", f"{async_bucket}/async-input/x.json", ()),
        ("s3:GetObject", f"{artifacts}/models/sdturbo/v1/handler.py", ()),  # the model
        ("s3:ListBucket", artifacts, ()),
        ("sagemaker:InvokeEndpoint", endpoint, ()),  # real-time calls bypass the queue
        ("sagemaker:InvokeEndpointAsync", endpoint.replace(outputs["endpoint_name"], "other"), ()),
        ("sagemaker:UpdateEndpoint", endpoint, ()),
        ("kms:Decrypt", key, ()),  # the key outside S3
        ("kms:Decrypt", key, (via_s3, ("kms:EncryptionContext:aws:s3:arn", f"{artifacts}/models/x"))),
        ("sns:Publish", outputs["success_topic_arn"], ()),
    ]
    allowed = [(a, r) for a, r, context in refused
               if iam_policy.decide([policy], Permission(a, r, (("aws:RequestedRegion", REGION), *context))) == "allow"]
    assert not allowed, allowed


# ------------------------------------------------------------------ IAM: the trace against the CI roles

@pytest.mark.parametrize("role", ["plan", "apply"])
def test_ci_role_allows_every_request_it_sends(cycle, role):
    cycle.require("bootstrap-apply", "main-destroy")
    refused = iam_policy.refusals(cycle.facts["policies"][role], cycle.operations(role), account(cycle),
                                  by_others=cycle.by_administrator)
    assert not refused, f"the {role} role's policies refuse:\n  " + "\n  ".join(r.describe() for r in refused)


def test_first_apply_takes_over_the_default_security_group_as_administrator(cycle):
    """The VPC's default security group comes untagged: the apply role, which changes only tagged network,
    could not tag it or remove its rules. The runbook's first apply (an administrator) does, and nothing
    else of the stack is left to the administrator."""
    cycle.require("first-apply", "main-destroy")
    policies = cycle.facts["policies"]["apply"]
    every = [op for run in cycle.runs.values() if run.role == "apply" for op in run.operations]
    refused = iam_policy.refusals(policies, every, account(cycle))
    assert refused and {r.resource_type for r in refused} == FIRST_APPLY_ONLY, [r.describe() for r in refused]
    assert all(op in cycle.first_apply_operations for op in every if op.resource_type in FIRST_APPLY_ONLY
               and not op.name.startswith(("Describe", "Get", "List")))


@pytest.mark.parametrize("role", ["plan", "apply"])
def test_removing_any_needed_action_is_caught(cycle, role):
    cycle.require("bootstrap-apply", "main-destroy")
    needed = iam_policy.checked(cycle.operations(role), account(cycle), by_others=cycle.by_administrator)
    actions = sorted({permission.action for permission, _ in needed})
    assert len(actions) > 20
    unnoticed = [action for action in actions if all(
        iam_policy.allowed(_without(cycle.facts["policies"][role], action), permission)
        for permission, _ in needed if permission.action == action)]
    assert not unnoticed, f"removing these from the {role} role went unnoticed: {unnoticed}"


def _without(policies: list[dict], action: str) -> list[dict]:
    """The policies with one action taken out of every Allow statement."""
    trimmed = copy.deepcopy(policies)
    for policy in trimmed:
        kept = []
        for statement in iam_policy._listify(policy["Statement"]):
            if statement["Effect"] == "Allow" and "Action" in statement:
                actions = [a for a in iam_policy._listify(statement["Action"]) if a.lower() != action.lower()]
                if not actions:
                    continue
                statement["Action"] = actions
            kept.append(statement)
        policy["Statement"] = kept
    return trimmed


# ------------------------------------------------------------------ IAM: no self-escalation

READ_VERBS = ("Get", "List", "Describe", "Head")
# Every IAM action that can give some principal a permission, or change who may use one.
GRANTING = [
    "iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy", "iam:CreatePolicy", "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion", "iam:CreateUser", "iam:PutUserPolicy", "iam:AttachUserPolicy",
    "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:PutGroupPolicy", "iam:AttachGroupPolicy",
    "iam:AddUserToGroup", "iam:CreateInstanceProfile", "iam:AddRoleToInstanceProfile", "iam:PassRole",
    "iam:UpdateOpenIDConnectProviderThumbprint", "iam:AddClientIDToOpenIDConnectProvider", "sts:AssumeRole",
]
CHANGING = GRANTING + ["iam:DeleteRole", "iam:DeleteRolePolicy", "iam:DetachRolePolicy", "iam:TagRole",
                       "iam:UntagRole", "iam:UpdateRole", "iam:DeletePolicy", "iam:DeletePolicyVersion"]
# Roles and policies the apply role must never touch, and one it has no business with.
FOREIGN_ROLES = [f"{NAME}-github-plan", f"{NAME}-github-apply", f"{NAME}-github-image-push", "admin"]


def iam_arn(resource: str) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:{resource}"


def test_plan_role_only_reads(cycle):
    cycle.require("bootstrap-apply")
    bootstrap = cycle.facts["bootstrap"]
    state_bucket = f"arn:aws:s3:::{bootstrap['state_bucket']}"
    not_verbs = {  # what a plan needs beyond reading, and the one resource it may do it to
        "s3:PutObject": f"{state_bucket}/*.tflock", "s3:DeleteObject": f"{state_bucket}/*.tflock",  # the state lock
        "kms:Decrypt": bootstrap["state_kms_key_arn"],  # reading the SSE-KMS state and lock
        "kms:GenerateDataKey": bootstrap["state_kms_key_arn"],  # writing the SSE-KMS lock object
    }
    for statement in iam_policy.statements(cycle.facts["policies"]["plan"]):
        if statement["Effect"] != "Allow":
            continue
        for action in iam_policy._listify(statement["Action"]):
            if action in not_verbs:
                assert iam_policy._listify(statement["Resource"]) == [not_verbs[action]], statement
            else:
                verb = action.split(":", 1)[1]
                assert verb.startswith(READ_VERBS) and "*" not in verb, f"{action} in {statement.get('Sid')}"


def _job_roles(cycle: Cycle) -> dict[str, tuple[str, github_oidc.Job]]:
    """Each job of the workflows that assumes a role: the CI role it assumes (through its repository variable,
    as the runbook sets it) and the job as GitHub sees it on the deploy branch (its environment, if any)."""
    found = {}
    for path in sorted(workflows.WORKFLOWS.glob("*.yml")):
        workflow = workflows.load(path.name)
        for name, job in workflow["jobs"].items():
            for role_arn in workflows.assumed_roles(job):
                arn = cycle.repository_variable(workflows.repository_variable(role_arn))
                role = arn.rsplit("/", 1)[1].removeprefix(f"{NAME}-github-")
                (branch,) = workflows.push_branches(workflow)
                found[f"{path.name}:{name}"] = (role, github_oidc.Job(f"refs/heads/{branch}", job.get("environment")))
    return found


def _trusts(cycle: Cycle, role: str, subject: str) -> bool:
    provider = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{github_oidc.ISSUER}"
    return iam_policy.decide([cycle.facts["trust"][role]], Permission(
        "sts:AssumeRoleWithWebIdentity", provider, github_oidc.token_context(subject))) == "allow"


def _template() -> dict:
    """The subject template step 2 sets on the repository."""
    (command,) = [c for c in runbook.step("2.").commands
                  if c.argv[:4] == ("gh", "api", "--method", "PUT") and c.argv[4].endswith("/oidc/customization/sub")]
    return json.loads(command.stdin)


def _repository(immutable: bool, owner_id: str = GITHUB[".owner.id"], repo_id: str = GITHUB[".id"]):
    owner, name = REPOSITORY.split("/")
    return github_oidc.Repository(owner, name, owner_id, repo_id, immutable)


@pytest.mark.parametrize("immutable", [False, True], ids=["repository-from-before-the-cutoff", "new-repository"])
def test_every_ci_job_gets_a_subject_its_role_trusts(cycle, immutable):
    """Each job of the workflows that assumes a role, with the subject GitHub gives it under the runbook's
    template: a repository created before GitHub's immutable-subject cutoff and one created after it (which
    always gets `repo:OWNER@OWNER_ID/REPO@REPO_ID`) alike."""
    cycle.require("bootstrap-apply")
    jobs = _job_roles(cycle)
    assert {role for role, _ in jobs.values()} == {"plan", "apply", "image-push"}, jobs
    for name, (role, job) in jobs.items():
        sub = github_oidc.subject(_template(), _repository(immutable), job)
        assert _trusts(cycle, role, sub), f"{name} ({role} role) gets {sub}, which its trust policy refuses"


ON_MAIN = github_oidc.Job("refs/heads/main", "production")  # what the apply job is


@pytest.mark.parametrize("job, change", [
    (ON_MAIN, {}),
    (ON_MAIN, {"template": {}}),  # GitHub's default: no branch in it
    (github_oidc.Job("refs/heads/feature", "production"), {}),  # another branch naming the environment
    (github_oidc.Job("refs/pull/7/merge", "production"), {}),
    (github_oidc.Job("refs/heads/main"), {}),  # main, outside the environment
    (ON_MAIN, {"owner_id": "999"}),  # the owner's name, claimed again by someone else
    (ON_MAIN, {"repo_id": "999"}),  # the repository's name, made again
    (ON_MAIN, {"template": {"use_default": False, "include_claim_keys": ["repo", "context", "ref"]}}),  # no ids
], ids=["environment-on-main", "default-template", "other-branch", "pull-request", "main-outside-the-environment",
        "recycled-owner-name", "recycled-repository-name", "names-without-ids"])
def test_apply_role_is_assumed_only_from_the_environment_on_the_deploy_branch(cycle, job, change):
    cycle.require("bootstrap-apply")
    template = change.get("template", _template())
    ids = {key: value for key, value in change.items() if key != "template"}
    sub = github_oidc.subject(template, _repository(False, **ids), job)
    assert _trusts(cycle, "apply", sub) == (not change and job == ON_MAIN), sub


def test_apply_role_writes_the_workload_role_s_policy_only_under_the_boundary(cycle):
    """AWS has no IAM condition on a trust policy's content: a role the apply role could create, or whose trust
    it could update, could trust anyone. So it creates, deletes and re-trusts no role at all (the workload
    role is the bootstrap's), and writes the workload role's policy only while the role has the boundary."""
    cycle.require("bootstrap-apply")
    apply = cycle.facts["policies"]["apply"]
    boundary = cycle.facts["bootstrap"]["workload_boundary_arn"]
    workload_role = iam_arn(f"role/{NAME}-sagemaker-execution")
    with_boundary = (("iam:PermissionsBoundary", boundary),)
    for action in [a for a in GRANTING if a != "iam:PutRolePolicy"] + ["iam:DeleteRole", "iam:UpdateRole"]:
        for context in [(), with_boundary, (("iam:PermissionsBoundary", iam_arn("policy/AdministratorAccess")),)]:
            for role in (workload_role, iam_arn(f"role/{NAME}-sagemaker-anything")):
                permission = Permission(action, role, (("aws:RequestedRegion", "us-east-1"), *context))
                assert iam_policy.decide(apply, permission) != "allow", permission
    region = (("aws:RequestedRegion", "us-east-1"),)
    assert iam_policy.decide(apply, Permission("iam:PutRolePolicy", workload_role, region + with_boundary)) == "allow"
    assert iam_policy.decide(apply, Permission("iam:PutRolePolicy", workload_role, region)) != "allow"
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy"):
        assert iam_policy.decide(apply, Permission(action, workload_role, region + with_boundary)) == "deny", action


def test_apply_role_neither_rewrites_nor_deletes_a_key(cycle):
    """Who may use a key is its policy; deleting it makes what it encrypts unreadable. Neither is CI's, on the
    stack's key or on any other key that carries the stack's tag."""
    cycle.require("bootstrap-apply")
    apply = cycle.facts["policies"]["apply"]
    for key in (cycle.facts["bootstrap"]["state_kms_key_arn"], f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/any"):
        for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:DisableKey"):
            context = (("aws:RequestedRegion", REGION), ("aws:ResourceTag/Project", NAME))
            assert iam_policy.decide(apply, Permission(action, key, context)) != "allow", (action, key)


def test_apply_role_cannot_touch_itself_the_other_ci_roles_or_the_boundary(cycle):
    cycle.require("bootstrap-apply")
    apply = cycle.facts["policies"]["apply"]
    boundary = cycle.facts["bootstrap"]["workload_boundary_arn"]
    targets = [iam_arn(f"role/{role}") for role in FOREIGN_ROLES] + [boundary, *(
        iam_arn(f"policy/{NAME}-{p}") for p in ("read-stack", "change-stack", "change-tagged", "apply-guardrails")), "*"]
    for target in targets:
        for action in CHANGING:
            for context in [(), (("iam:PermissionsBoundary", boundary),)]:
                permission = Permission(action, target, (("aws:RequestedRegion", "us-east-1"), *context))
                assert iam_policy.decide(apply, permission) != "allow", permission


@pytest.mark.parametrize("role", ["plan", "apply"])
def test_ci_roles_assume_no_other_role(cycle, role):
    cycle.require("bootstrap-apply")
    for target in [iam_arn(f"role/{NAME}-sagemaker-execution"), iam_arn("role/admin")]:
        assert iam_policy.decide(cycle.facts["policies"][role], Permission("sts:AssumeRole", target)) == "deny"


def test_workload_role_carries_the_boundary(cycle):
    cycle.require("create-apply")
    assert cycle.facts["workload_role_boundary"] == cycle.facts["bootstrap"]["workload_boundary_arn"]


def test_workload_role_policy_fits_inside_the_boundary(cycle):
    cycle.require("create-apply")
    boundary = cycle.facts["boundary"]
    outside = []
    for statement in iam_policy.statements(cycle.facts["workload_policy"]):
        # The key the role uses is the stack's, which carries the stack's Project tag.
        context = tuple((key, iam_policy._listify(values)[0]) for keys in statement.get("Condition", {}).values()
                        for key, values in keys.items()) + (("aws:ResourceTag/Project", NAME),)
        for action in iam_policy._listify(statement["Action"]):
            for resource in iam_policy._listify(statement["Resource"]):
                if iam_policy.decide([boundary], Permission(action, resource, context)) != "allow":
                    outside.append(f"{action} on {resource}")
    assert not outside, f"the boundary cuts the execution role's {outside}"
    for action in GRANTING:
        assert iam_policy.decide([boundary], Permission(action, "*")) != "allow", action


# ------------------------------------------------------------------ IAM: nothing beyond the stack

@pytest.mark.parametrize("policies", ["apply", "boundary"])
def test_ci_writes_reach_no_resource_of_another_team(cycle, policies):
    """Another team's VPC, security group or key in the same account and region, untagged: the apply role
    may not change it or claim it by tagging it, and no workload role may use the key."""
    cycle.require("bootstrap-apply")
    documents = cycle.facts["policies"]["apply"] if policies == "apply" else [cycle.facts["boundary"]]
    reached = [f"{p.action} on {p.resource}" for p in iam_policy.beyond_the_stack(account(cycle), NAME)
               if iam_policy.decide(documents, p) == "allow"]
    assert not reached, f"the {policies} policies reach beyond the stack: {reached}"


@pytest.mark.parametrize("policies", ["apply", "boundary"])
def test_stack_key_grants_only_to_aws_services(cycle, policies):
    """A grant that no AWS service asked for hands the key to any principal the grant names."""
    cycle.require("bootstrap-apply", "create-apply")
    documents = cycle.facts["policies"]["apply"] if policies == "apply" else [cycle.facts["boundary"]]
    key = cycle.facts["caller"]["outputs"]["kms_key_arn"]
    anyone = iam_policy.stack_key_grant_to_anyone(account(cycle), NAME, key)
    assert iam_policy.decide(documents, anyone) != "allow"
    for_a_service = Permission(anyone.action, key, anyone.context + (("kms:GrantIsForAWSResource", "true"),))
    assert iam_policy.decide(documents, for_a_service) == "allow", "SageMaker's volume grant (infra/data.tf)"


# ------------------------------------------------------------------ notifications (runbook step 8)

def test_smoke_call_waits_for_the_notification_on_the_runbook_s_queue(cycle):
    success, failure = cycle.require("smoke-call", "smoke-call-failure")
    calls = cycle.facts["caller"]["calls"]
    received = [c for c in calls if (c["service"], c["operation"]) == ("SQS", "ReceiveMessage")]
    assert received and all(c["params"]["QueueUrl"].endswith("/sdturbo-smoke") for c in received[:2]), received[:2]
    assert "prompt: too long" in failure.output
    # The queue's policy lets exactly the stack's two topics send to it.
    (statement,) = cycle.facts["smoke_queue"]["Statement"]
    outputs = cycle.facts["caller"]["outputs"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert set(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == {outputs["success_topic_arn"],
                                                                           outputs["error_topic_arn"]}


def test_smoke_call_drops_sagemaker_s_test_notifications(cycle):
    """A scaling step left SageMaker's test notification of both topics on the smoke queue; the calls
    skipped them (they name no request) and deleted them, so they do not pile up with every scaling step."""
    cycle.require("smoke-call", "smoke-call-failure")
    test_notification = {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
    assert cycle.facts["test_notifications_queued"] == [test_notification, test_notification]
    assert test_notification not in cycle.facts["smoke_queue_left"], cycle.facts["smoke_queue_left"]


def test_sns_endpoint_applies_and_goes_away(cycle):
    """enable_sns_endpoint, applied by CI's roles (their requests are held to their policies with the others,
    Route 53's private DNS association included): an interface endpoint with private DNS, then none."""
    cycle.require("sns-endpoint-on-apply", "sns-endpoint-off-apply")
    assert [(e["type"], e["private_dns"]) for e in cycle.facts["sns_endpoints"]] == [("Interface", True)]
    assert cycle.facts["sns_endpoints_after"] == []


def test_missing_notification_names_the_sns_endpoint_setting(cycle):
    (run,) = cycle.require("smoke-call-no-notification")
    assert "no notification" in run.output and "enable_sns_endpoint" in run.output, run.output[-1500:]
    assert "Traceback" not in run.output
