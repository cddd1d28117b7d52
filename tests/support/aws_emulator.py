"""moto in server mode, plus the checks AWS makes that moto skips and the calls moto lacks.

The infra tests apply the real stack to this emulator. moto 5.2 accepts most of it, but it differs from
AWS in ways that would either hide a defect of the stack (it accepts what AWS refuses) or break the run
for reasons that are moto's, not the stack's. Each difference is one function below, named after it, with
what AWS does and why the emulator must match it. Nothing else of moto is changed.

Run it as a script (``python tests/support/aws_emulator.py --port N``) or through :class:`Emulator`, which starts it
on a free loopback port and stops it afterwards.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from sdturbo_ops.processes import free_port

ACCOUNT_ID = "123456789012"  # moto's default account: fake, not an AWS account of ours
REGION = "us-east-1"


# ------------------------------------------------------------------ checks AWS makes that moto skips

def sagemaker_names_are_unique() -> None:
    """AWS refuses CreateModel, CreateEndpointConfig and CreateEndpoint for a name that already exists
    ("Cannot create already existing model ..."); moto overwrites the old object. Without this check a
    replacement that keeps its name under ``create_before_destroy`` passes here and fails on AWS."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend, arn_formatter

    def refuse_existing(kind: str, arn_kind: str, registry: str, name_arg: str):
        original = getattr(SageMakerModelBackend, f"create_{kind}")

        def create(self, *args, **kwargs):
            name = kwargs.get(name_arg, args[0] if args else None)
            if name in getattr(self, registry):
                arn = arn_formatter(arn_kind, name, self.account_id, self.region_name)
                label = arn_kind.replace("-", " ").replace("config", "configuration")
                raise ValidationError(message=f'Cannot create already existing {label} "{arn}".')
            return original(self, *args, **kwargs)

        setattr(SageMakerModelBackend, f"create_{kind}", create)

    refuse_existing("model", "model", "_models", "model_name")
    refuse_existing("endpoint_config", "endpoint-config", "endpoint_configs", "endpoint_config_name")
    refuse_existing("endpoint", "endpoint", "endpoints", "endpoint_name")


def iam_policy_sizes_are_limited() -> None:
    """AWS refuses a managed policy over 6,144 characters and a role whose inline policies add up to over
    10,240 (whitespace not counted, IAM quotas); moto stores any size. Least-privilege policies that name
    every resource grow, and would first fail on AWS."""
    from moto.iam.exceptions import LimitExceededException
    from moto.iam.models import IAMBackend

    def size(document: str) -> int:
        return len("".join(document.split()))

    def limit(name: str, check) -> None:
        original = getattr(IAMBackend, name)
        signature = inspect.signature(original)

        def limited(self, *args, **kwargs):
            check(self, signature.bind(self, *args, **kwargs).arguments)
            return original(self, *args, **kwargs)

        setattr(IAMBackend, name, limited)

    def managed(self, arguments) -> None:
        if size(arguments["policy_document"]) > 6144:
            raise LimitExceededException("Cannot exceed quota for PolicySize: 6144")

    def inline(self, arguments) -> None:
        role = self.get_role(arguments["role_name"])
        others = [doc for name, doc in role.policies.items() if name != arguments["policy_name"]]
        if sum(map(size, others)) + size(arguments["policy_json"]) > 10240:
            raise LimitExceededException("Maximum policy size of 10240 bytes exceeded for role "
                                         f"{arguments['role_name']}")

    limit("create_policy", managed)
    limit("create_policy_version", managed)
    limit("put_role_policy", inline)


# ------------------------------------------------------------------ calls moto lacks

def sagemaker_update_endpoint() -> None:
    """moto has no UpdateEndpoint, which every deploy of the stack calls. This one does what AWS
    documents: it refuses to change the instance type of a variant registered with Application Auto
    Scaling (deregister it first), and the variant's instance count becomes the new configuration's
    InitialInstanceCount unless RetainAllVariantProperties keeps the current one."""
    from moto.applicationautoscaling.models import applicationautoscaling_backends
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpoint
    from moto.sagemaker.responses import SageMakerResponse

    def update_endpoint(self) -> ActionResult:
        backend = self.sagemaker_backend
        name = self._get_param("EndpointName")
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find endpoint '{arn}'.")
        new_config = backend.describe_endpoint_config(self._get_param("EndpointConfigName"))
        old_types = {v["VariantName"]: v.get("InstanceType") for v in endpoint.instance_types_in_service}
        scaling = applicationautoscaling_backends[backend.account_id][backend.region_name]
        registered = scaling.targets.get("sagemaker:variant:DesiredInstanceCount", {})
        for variant in new_config["ProductionVariants"]:
            resource_id = f"endpoint/{name}/variant/{variant['VariantName']}"
            changed = old_types.get(variant["VariantName"]) not in (None, variant.get("InstanceType"))
            if changed and resource_id in registered:
                raise ValidationError(message=(
                    f"The variant {variant['VariantName']} of endpoint {name} is registered with Application "
                    "Auto Scaling: deregister it as a scalable target before changing its instance type."))
        current = {v["VariantName"]: v.get("DesiredInstanceCount") for v in endpoint.production_variants}
        endpoint.production_variants = endpoint._process_production_variants(new_config["ProductionVariants"])
        if self._get_param("RetainAllVariantProperties"):
            for variant in endpoint.production_variants:
                if current.get(variant["VariantName"]) is not None:
                    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = current[variant["VariantName"]]
        endpoint.instance_types_in_service = new_config["ProductionVariants"]
        endpoint.endpoint_config_name = new_config["EndpointConfigName"]
        if hasattr(backend, "notify_update"):  # sagemaker_sends_test_notifications
            backend.notify_update(name)
        return ActionResult({"EndpointArn": endpoint.arn})

    from moto.sagemaker.models import SageMakerModelBackend

    create_endpoint = SageMakerModelBackend.create_endpoint

    def remember_instance_types(self, endpoint_name, endpoint_config_name, tags):
        endpoint = create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        endpoint.instance_types_in_service = self.describe_endpoint_config(endpoint_config_name)["ProductionVariants"]
        return endpoint

    SageMakerModelBackend.create_endpoint = remember_instance_types
    SageMakerResponse.update_endpoint = update_endpoint


def autoscaling_tags() -> None:
    """moto's Application Auto Scaling has no ListTagsForResource, TagResource or UntagResource; the
    provider calls them for every scalable target (default tags) and, on the 500 moto answers, retries for
    ten minutes. These keep the tags per target ARN, and refuse an ARN no registered target has."""
    from moto.applicationautoscaling.exceptions import AWSValidationException
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    tags: dict[str, dict[str, str]] = {}

    def known_arn(self) -> str:
        arn = self._get_param("ResourceARN")
        backend = self.applicationautoscaling_backend
        if not any(t.arn == arn for targets in backend.targets.values() for t in targets.values()):
            raise AWSValidationException(f"No scalable target found for {arn}")
        return arn

    def list_tags_for_resource(self) -> str:
        return json.dumps({"Tags": tags.get(known_arn(self), {})})

    def tag_resource(self) -> str:
        tags.setdefault(known_arn(self), {}).update(self._get_param("Tags") or {})
        return json.dumps({})

    def untag_resource(self) -> str:
        for key in self._get_param("TagKeys") or []:
            tags.get(known_arn(self), {}).pop(key, None)
        return json.dumps({})

    register = ApplicationAutoScalingResponse.register_scalable_target

    def register_with_tags(self) -> str:
        result = register(self)
        if self._get_param("Tags"):
            tags.setdefault(json.loads(result)["ScalableTargetARN"], {}).update(self._get_param("Tags"))
        return result

    ApplicationAutoScalingResponse.list_tags_for_resource = list_tags_for_resource
    ApplicationAutoScalingResponse.tag_resource = tag_resource
    ApplicationAutoScalingResponse.untag_resource = untag_resource
    ApplicationAutoScalingResponse.register_scalable_target = register_with_tags


# ------------------------------------------------------------------ moto answers that differ from AWS's

def s3_requests_arrive_over_tls() -> None:
    """moto ignores a bucket policy's conditions, so the stack's TLS-only statement (Deny s3:* when
    aws:SecureTransport is false) denies every object request. Clients reach AWS over HTTPS; the
    emulator stands in for that endpoint on plain loopback HTTP, so such statements do not apply here.
    Every other statement is still evaluated by moto."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def insecure_transport_only(statement: dict) -> bool:
        return statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}

    def get_permission(self, action: str, resource: str):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy.decode())
        statements = policy.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        kept = [s for s in statements if not insecure_transport_only(s)]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission


def s3_versions_outlive_suspended_versioning() -> None:
    """moto deletes by key, ignoring the version asked for, once a bucket's versioning is suspended: a
    DeleteObjects that names several versions of one key then fails (KeyError, a 500) and a force_destroy
    never empties the bucket. AWS keeps the versions of a versioning-suspended bucket, and a delete that
    names a version removes that version (Amazon S3 User Guide, objects in versioning-suspended buckets).
    The state bucket is versioned and its lock object is written and deleted on every run; destroying its
    versioning resource suspends versioning just before the bucket is emptied."""
    from moto.s3.models import S3Backend

    delete_object = S3Backend.delete_object

    def delete_version(self, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False):
        bucket = self.get_bucket(bucket_name)
        if version_id is None or bucket.versioning_status != "Suspended":
            return delete_object(self, bucket_name, key_name, version_id, bypass)
        bucket.versioning_status = "Enabled"  # moto's path that honours the version
        try:
            return delete_object(self, bucket_name, key_name, version_id, bypass)
        finally:
            bucket.versioning_status = "Suspended"

    S3Backend.delete_object = delete_version


def sagemaker_echoes_network_isolation() -> None:
    """moto's CreateModel drops EnableNetworkIsolation and DescribeModel always answers false, so every
    plan would propose to replace the model. AWS returns what was sent."""
    from moto.sagemaker.responses import SageMakerResponse

    create_model = SageMakerResponse.create_model

    def create(self):
        result = create_model(self)
        model = self.sagemaker_backend._models[self._get_param("ModelName")]
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation", False))
        return result

    SageMakerResponse.create_model = create


def sagemaker_async_results_land_in_the_output_path() -> None:
    """moto answers InvokeEndpointAsync for any endpoint name and writes the result to a new bucket of its
    own (``sagemaker-output-<uuid>``). AWS refuses an endpoint that does not exist, and writes the result
    to the endpoint configuration's S3OutputPath as ``<inference id>.out`` (a failure to S3FailurePath as
    ``<inference id>-error.out``), the locations it answers. Clients read their results there and a caller's
    IAM policy grants exactly those prefixes: moto's bucket would hide a client or a policy that reads
    elsewhere. The result itself is still the one queued through moto's API (or moto's default); it is
    moved, so no bucket is left behind that the stack did not make.

    moto publishes no notification either; AWS publishes one to the configuration's SuccessTopic or
    ErrorTopic, in the format the SageMaker Developer Guide shows ("Check prediction results": inferenceId,
    invocationStatus, responseParameters with the output location, failureReason). This one publishes it as
    SageMaker's service would, from outside the stack's VPC: whether the agent of a real endpoint in private
    subnets reaches SNS is what only a real account shows (infra/README.md, "What the emulator test proves")."""
    from moto.s3.models import s3_backends
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import sagemaker_backends
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.sns.models import sns_backends

    def split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def invoke_endpoint_async(self):
        endpoint_name = self.path.split("/")[2]
        runtime = self.sagemakerruntime_backend
        sagemaker = sagemaker_backends[self.current_account][self.region]
        endpoint = sagemaker.endpoints.get(endpoint_name)
        if endpoint is None:
            raise ValidationError(message=f"Endpoint {endpoint_name} of account {self.current_account} not found.")
        paths = sagemaker.describe_endpoint_config(endpoint.endpoint_config_name).get(
            "AsyncInferenceConfig", {}).get("OutputConfig", {})
        if not paths.get("S3OutputPath"):
            raise ValidationError(message=f"Endpoint {endpoint_name} is not an asynchronous inference endpoint.")
        inference_id = self.headers.get("X-Amzn-SageMaker-Inference-Id") or str(uuid.uuid4())
        locations = {"output": f"{paths['S3OutputPath'].rstrip('/')}/{inference_id}.out",
                     "failure": f"{paths.get('S3FailurePath', paths['S3OutputPath']).rstrip('/')}/{inference_id}-error.out"}
        moto_locations = runtime.invoke_endpoint_async(endpoint_name, self.headers.get("X-Amzn-SageMaker-InputLocation"))
        s3 = s3_backends[self.current_account][runtime.partition]
        outcome = None
        for (kind, uri), moto_uri in zip(locations.items(), moto_locations, strict=True):
            bucket, key = split(moto_uri)
            if bucket not in s3.buckets:  # moto repeats its answer for an input it has seen: moved already
                continue
            written = s3.get_object(bucket, key)
            if written is not None:
                s3.put_object(*split(uri), value=written.value)
                s3.delete_object(bucket, key)
                outcome = kind
            if not s3.buckets[bucket].keys:
                s3.delete_bucket(bucket)
        topics = paths.get("NotificationConfig", {})
        topic = topics.get("SuccessTopic" if outcome == "output" else "ErrorTopic") if outcome else None
        if topic:
            succeeded = outcome == "output"
            event = {"awsRegion": self.region, "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                     "receivedTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                     "invocationStatus": "Completed" if succeeded else "Failed",
                     "requestParameters": {"accept": "application/json", "endpointName": endpoint_name,
                                           "inputLocation": self.headers.get("X-Amzn-SageMaker-InputLocation")},
                     "responseParameters": {"contentType": "application/json",
                                            ("outputLocation" if succeeded else "failureLocation"): locations[outcome]},
                     "inferenceId": inference_id, "eventVersion": "1.0", "eventSource": "aws:sagemaker",
                     "eventName": "InferenceResult"}
            if not succeeded:
                event["failureReason"] = "ClientError: Received client error (400) from primary and could not retry."
            sns_backends[self.current_account][self.region].publish(json.dumps(event), arn=topic)
        headers = {"X-Amzn-SageMaker-OutputLocation": locations["output"],
                   "X-Amzn-SageMaker-FailureLocation": locations["failure"]}
        return 202, headers, json.dumps({"InferenceId": inference_id})

    SageMakerRuntimeResponse.invoke_endpoint_async = invoke_endpoint_async


def sagemaker_sends_test_notifications() -> None:
    """moto publishes nothing when an asynchronous endpoint is created, updated or scaled. AWS's SageMaker
    "sends a test notification to check that you have configured an Amazon SNS topic", after CreateEndpoint,
    UpdateEndpoint and UpdateEndpointWeightsAndCapacities (which Application Auto Scaling calls on every
    scaling step), to the configuration's topics, in the form the SageMaker Developer Guide shows ("Create
    Endpoint" of asynchronous inference). A subscriber that took every message on the error topic for a
    failed request, or left these on its queue, would pass here without them."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sns.models import sns_backends

    test_notification = json.dumps({"eventVersion": "1.0", "eventSource": "aws:sagemaker",
                                     "eventName": "TestNotification"})

    def notify(backend, endpoint_name: str) -> None:
        endpoint = backend.endpoints.get(endpoint_name)
        config = backend.endpoint_configs.get(endpoint.endpoint_config_name) if endpoint else None
        topics = ((config.async_inference_config or {}).get("OutputConfig", {}).get("NotificationConfig", {})
                  if config else {})
        for topic in (topics.get("SuccessTopic"), topics.get("ErrorTopic")):
            if topic:
                sns_backends[backend.account_id][backend.region_name].publish(test_notification, arn=topic)

    def after(name: str, endpoint_name_of) -> None:
        original = getattr(SageMakerModelBackend, name)
        signature = inspect.signature(original)

        def notifying(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            notify(self, endpoint_name_of(signature.bind(self, *args, **kwargs).arguments))
            return result

        setattr(SageMakerModelBackend, name, notifying)

    after("create_endpoint", lambda arguments: arguments["endpoint_name"])
    after("update_endpoint_weights_and_capacities", lambda arguments: arguments["endpoint_name"])
    SageMakerModelBackend.notify_update = notify  # UpdateEndpoint is the emulator's own (sagemaker_update_endpoint)


def sagemaker_omits_unset_data_capture() -> None:
    """moto's DescribeEndpointConfig answers an empty DataCaptureConfig when none was set, which the
    provider reads as a data_capture_config block and plans to remove. AWS omits the field."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.responses import SageMakerResponse

    describe = SageMakerResponse.describe_endpoint_config

    def describe_without_empty(self):
        result = describe(self)
        body = dict(result.result)
        if not body.get("DataCaptureConfig"):
            body.pop("DataCaptureConfig", None)
        return ActionResult(body)

    SageMakerResponse.describe_endpoint_config = describe_without_empty


def ec2_rule_descriptions_are_kept() -> None:
    """moto's DescribeSecurityGroupRules returns a rule's description only for CIDR rules; for a rule that
    names a security group or a prefix list it drops it, so every plan would set the descriptions again.
    AWS returns the description of every rule."""
    from moto.ec2.models.security_groups import SecurityGroupRule

    init = SecurityGroupRule.__init__
    signature = inspect.signature(init)

    def keep_description(self, *args, **kwargs):
        init(self, *args, **kwargs)
        prefix_list = signature.bind(self, *args, **kwargs).arguments.get("prefix_list_id") or {}
        self._peer_description = (self.source_group or {}).get("Description") or prefix_list.get("Description")

    SecurityGroupRule.__init__ = keep_description
    SecurityGroupRule.description = property(
        lambda self: self.ip_range.get("Description") or getattr(self, "_peer_description", None))


DIFFERENCES = [
    sagemaker_names_are_unique,
    iam_policy_sizes_are_limited,
    sagemaker_update_endpoint,
    autoscaling_tags,
    s3_requests_arrive_over_tls,
    s3_versions_outlive_suspended_versioning,
    sagemaker_echoes_network_isolation,
    sagemaker_async_results_land_in_the_output_path,
    sagemaker_omits_unset_data_capture,
    ec2_rule_descriptions_are_kept,
    sagemaker_sends_test_notifications,
]


def install() -> None:
    for difference in DIFFERENCES:
        difference()


# ------------------------------------------------------------------ process


class Emulator:
    """The emulator as a child process on a free loopback port; a context manager that stops it."""

    def __init__(self, log_path: Path, timeout: float = 60):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Emulator":
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, __file__, "--port", str(self.port)], stdout=log,
                                        stderr=subprocess.STDOUT, env={**os.environ, "MOTO_PORT": str(self.port)})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the emulator did not answer on {self.url} within {self.timeout:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    args = parser.parse_args(argv)
    install()
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
