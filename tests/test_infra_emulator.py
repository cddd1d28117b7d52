"""The real stack applied, updated and destroyed on the AWS emulator, the way CI and an operator run it.

One module-scoped cycle (tests/aws_emulator.py starts moto with the checks AWS makes that moto skips):
bootstrap apply (an administrator; the main stack starts as soon as the state bucket, lock table and
boundary exist) -> main plan (plan role) and apply of that plan (apply role) ->
re-plan (no changes) -> three deploys, each planned and applied: a TorchServe setting, a new image tag
while autoscaling runs two instances, a new instance type -> main destroy (apply role) -> bootstrap
destroy (its guards lifted only in the scratch copy). Every AWS request of each run is read from
Terraform's debug log and must be allowed by the policy of the CI role that runs it.

The tests below each read one fact of that cycle; a step that failed fails its own test with Terraform's
output, and the steps after it report that they were not reached.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests import iam_policy
from tests.iam_policy import Permission
from tests.aws_emulator import ACCOUNT_ID, REGION, Emulator
from tests.helpers import REPO
from tests.terraform_root import Root, Run, backend_config
from tests.terraform_trace import Operation

pytestmark = [pytest.mark.infra, pytest.mark.timeout(900)]

NAME = "sdturbo"  # both roots' default `name`
REPOSITORY = "example-org/sdturbo-serve"
STATE_KEY = "sdturbo-serve/terraform.tfstate"  # as deploy-infrastructure.yml's init
VARIANT = "AllTraffic"
WORK = REPO / "build" / "infra-emulator"  # scratch roots, Terraform's logs and outputs, timings.json


class NotReached(Exception):
    """A step after a failed one."""


@dataclass
class Cycle:
    emulator: Emulator
    work: Path
    runs: dict[str, Run] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    failed: str = ""  # the first step that failed
    variables: dict[str, str] = field(default_factory=lambda: {"image_tag": "1" * 40})

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
        return [f"-var={key}={value}" for key, value in sorted(self.variables.items())]

    def deploy(self, name: str, **changes: str) -> None:
        """What deploy-infrastructure.yml does: plan with the plan role, apply that plan with the apply role."""
        self.variables.update(changes)
        self.variables["deploy_instance_count"] = self.deploy_instance_count()
        self.step(self.main.run(f"{name}-plan", "plan", "plan", "-no-color", "-lock-timeout=60s", "-out=tfplan",
                                *self.var_args()))
        self.runs[f"{name}-plan"].operations.append(self.count_request)
        self.step(self.main.run(f"{name}-apply", "apply", "apply", "-no-color", "-lock-timeout=60s", "tfplan"))
        self.facts[name] = self.endpoint_state()

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
        self.step(bootstrap.init("bootstrap-init", "admin"))
        applying = bootstrap.start("bootstrap-apply", "admin", "apply", "-auto-approve", "-no-color",
                                   f"-var=github_repository={REPOSITORY}")
        # Once the state bucket, the lock table and the workload boundary exist, the bootstrap apply only
        # waits out the provider's check of the bucket's lifecycle rules (it polls them for 55 s): the
        # main stack, which needs nothing else of it, starts then instead of after it.
        foundation = self.wait_for_foundation(applying)
        if foundation is None:
            self.step(applying.wait())
            raise NotReached("bootstrap-apply")
        self.main = Root(REPO / "infra", self.work / "main", self.emulator.url, self.work / "logs")
        self.main.write("emulator.s3.tfbackend", backend_config(self.emulator.url, *foundation, STATE_KEY, REGION))
        self.step(self.main.init("main-init", "plan", "-backend-config=emulator.s3.tfbackend"))
        self.deploy("create")
        self.step(applying.wait())
        outputs = json.loads(bootstrap.run("bootstrap-outputs", "admin", "output", "-json").output)
        self.facts["bootstrap"] = {key: value["value"] for key, value in outputs.items()}
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

        self.step(self.main.run("replan", "plan", "plan", "-no-color", "-detailed-exitcode", "-lock-timeout=60s",
                                *self.var_args()))

        self.deploy("torchserve-setting", torchserve_workers="1")
        # Autoscaling has taken the endpoint to two instances when the next image is deployed.
        self.client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=NAME, DesiredWeightsAndCapacities=[{"VariantName": VARIANT, "DesiredInstanceCount": 2}])
        self.deploy("image-tag", image_tag="2" * 40)
        self.deploy("instance-type", instance_type="ml.g4dn.xlarge")

        self.step(self.main.run("main-destroy", "apply", "destroy", "-auto-approve", "-no-color",
                                "-lock-timeout=60s", *self.var_args()))
        self.facts["left_after_destroy"] = self.leftovers()

        # Tearing the account down, an administrator lifts the bootstrap's guards: prevent_destroy (here in
        # the copy only), the lock table's deletion protection, and the state bucket's remaining versions.
        bootstrap.write("zz_teardown_override.tf", TEARDOWN_OVERRIDE)
        self.empty_state_bucket()
        self.client("dynamodb").update_table(TableName=self.facts["bootstrap"]["lock_table"],
                                             DeletionProtectionEnabled=False)
        self.step(bootstrap.run("bootstrap-destroy", "admin", "destroy", "-auto-approve", "-no-color",
                                f"-var=github_repository={REPOSITORY}"))

    def wait_for_foundation(self, applying, timeout: float = 180) -> tuple[str, str] | None:
        """(state bucket, lock table) once they and the workload boundary exist; None if the apply ends first."""
        from botocore.exceptions import ClientError

        boundary = f"arn:aws:iam::{ACCOUNT_ID}:policy/{NAME}-workload-boundary"
        deadline = time.monotonic() + timeout
        while applying.process.poll() is None and time.monotonic() < deadline:
            buckets = [b["Name"] for b in self.client("s3").list_buckets().get("Buckets", [])
                       if b["Name"].startswith(f"{NAME}-tfstate-")]
            tables = [t for t in self.client("dynamodb").list_tables()["TableNames"] if t == f"{NAME}-tflock"]
            try:
                self.client("iam").get_policy(PolicyArn=boundary)
            except ClientError:
                buckets = []
            if buckets and tables:
                return buckets[0], tables[0]
            time.sleep(1)
        return None

    def empty_state_bucket(self) -> None:
        s3, bucket = self.client("s3"), self.facts["bootstrap"]["state_bucket"]
        listing = s3.list_object_versions(Bucket=bucket)
        for entry in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])

    def leftovers(self) -> dict[str, list[str]]:
        return {
            "models": [m["ModelName"] for m in self.client("sagemaker").list_models()["Models"]],
            "endpoints": [e["EndpointName"] for e in self.client("sagemaker").list_endpoints()["Endpoints"]],
            "vpcs": [v["VpcId"] for v in self.client("ec2").describe_vpcs(
                Filters=[{"Name": "tag:Project", "Values": [NAME]}])["Vpcs"]],
            "scaling_targets": [t["ResourceId"] for t in self.client("application-autoscaling")
                                .describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]],
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

    def operations(self, role: str) -> list[Operation]:
        return [op for run in self.runs.values() if run.role == role for op in run.operations]


TEARDOWN_OVERRIDE = """resource "aws_s3_bucket" "state" {
  lifecycle {
    prevent_destroy = false
  }
}
"""


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
    bootstrap = cycle.facts["bootstrap"]
    return iam_policy.Account(region=REGION, account_id=ACCOUNT_ID,
                              sse_kms_keys={bootstrap["state_bucket"]: bootstrap["state_kms_key_arn"]})


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


def test_torchserve_setting_replaces_the_model_under_a_new_name(cycle):
    cycle.require("torchserve-setting-plan", "torchserve-setting-apply")
    before, after = cycle.facts["create"], cycle.facts["torchserve-setting"]
    assert after["model"] != before["model"]
    assert after["models"] == [after["model"]]  # the old model is gone once the endpoint switched


def test_image_deploy_keeps_the_instance_count_autoscaling_chose(cycle):
    cycle.require("image-tag-plan", "image-tag-apply")
    assert cycle.facts["image-tag"]["model"] != cycle.facts["torchserve-setting"]["model"]
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


def test_stack_destroys_completely(cycle):
    cycle.require("main-destroy")
    assert cycle.facts["left_after_destroy"] == {"models": [], "endpoints": [], "vpcs": [], "scaling_targets": []}


def test_bootstrap_destroys_once_its_guards_are_lifted(cycle):
    cycle.require("bootstrap-destroy")


# ------------------------------------------------------------------ IAM: the trace against the CI roles

@pytest.mark.parametrize("role", ["plan", "apply"])
def test_ci_role_allows_every_request_it_sends(cycle, role):
    cycle.require("bootstrap-apply", "main-destroy")
    refused = iam_policy.refusals(cycle.facts["policies"][role], cycle.operations(role), account(cycle))
    assert not refused, f"the {role} role's policies refuse:\n  " + "\n  ".join(r.describe() for r in refused)


@pytest.mark.parametrize("role", ["plan", "apply"])
def test_removing_any_needed_action_is_caught(cycle, role):
    cycle.require("bootstrap-apply", "main-destroy")
    needed = iam_policy.checked(cycle.operations(role), account(cycle))
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
    lock_table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{bootstrap['lock_table']}"
    not_verbs = {  # what a plan needs beyond reading, and the one resource it may do it to
        "dynamodb:PutItem": lock_table, "dynamodb:DeleteItem": lock_table,  # the state lock
        "kms:Decrypt": bootstrap["state_kms_key_arn"],  # reading the SSE-KMS state
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


def test_each_ci_role_trusts_only_its_own_subject(cycle):
    cycle.require("bootstrap-apply")
    expected = {"plan": f"repo:{REPOSITORY}:ref:refs/heads/main", "image-push": f"repo:{REPOSITORY}:ref:refs/heads/main",
                "apply": f"repo:{REPOSITORY}:environment:production"}
    for role, subject in expected.items():
        (statement,) = iam_policy.statements([cycle.facts["trust"][role]])
        conditions = statement["Condition"]["StringEquals"]
        assert conditions["token.actions.githubusercontent.com:sub"] in (subject, [subject]), role
        assert conditions["token.actions.githubusercontent.com:aud"] in ("sts.amazonaws.com", ["sts.amazonaws.com"])


def test_apply_role_changes_roles_only_under_the_boundary(cycle):
    cycle.require("bootstrap-apply")
    apply = cycle.facts["policies"]["apply"]
    boundary = cycle.facts["bootstrap"]["workload_boundary_arn"]
    workload_role = iam_arn(f"role/{NAME}-sagemaker-execution")
    # A workload role's trust policy is the apply role's to write (AWS has no condition on its content):
    # whoever it trusts gets no more than the boundary, and neither CI role may assume another role.
    for action in [a for a in GRANTING if a != "iam:UpdateAssumeRolePolicy"]:
        for context in [(), (("iam:PermissionsBoundary", iam_arn("policy/AdministratorAccess")),)]:
            permission = Permission(action, workload_role, (("aws:RequestedRegion", "us-east-1"), *context))
            assert iam_policy.decide(apply, permission) != "allow", permission
    with_boundary = (("aws:RequestedRegion", "us-east-1"), ("iam:PermissionsBoundary", boundary))
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):  # what the stack needs, and only with the boundary
        assert iam_policy.decide(apply, Permission(action, workload_role, with_boundary)) == "allow", action
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary", "iam:AttachRolePolicy"):
        assert iam_policy.decide(apply, Permission(action, workload_role, with_boundary)) == "deny", action


def test_apply_role_cannot_touch_itself_the_other_ci_roles_or_the_boundary(cycle):
    cycle.require("bootstrap-apply")
    apply = cycle.facts["policies"]["apply"]
    boundary = cycle.facts["bootstrap"]["workload_boundary_arn"]
    targets = [iam_arn(f"role/{role}") for role in FOREIGN_ROLES] + [
        boundary, *(iam_arn(f"policy/{NAME}-{p}") for p in ("read-stack", "change-stack", "apply-guardrails")), "*"]
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
        context = tuple((key, iam_policy._listify(values)[0]) for keys in statement.get("Condition", {}).values()
                        for key, values in keys.items())
        for action in iam_policy._listify(statement["Action"]):
            for resource in iam_policy._listify(statement["Resource"]):
                if iam_policy.decide([boundary], Permission(action, resource, context)) != "allow":
                    outside.append(f"{action} on {resource}")
    assert not outside, f"the boundary cuts the execution role's {outside}"
    for action in GRANTING:
        assert iam_policy.decide([boundary], Permission(action, "*")) != "allow", action
