"""The SageMaker asynchronous endpoint from a client's side: upload the request, queue it, find its result.

A result is found by polling S3 (the output and failure locations, with back-off), or, when the caller
names an SQS queue subscribed to the stack's success and error topics, by long-polling that queue for
the notification with the request's inference id (then the object is read from S3 as well).
Credentials come from the standard AWS chain. Failures are sdturbo_ops.client's exceptions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops.client import ACCEPT, BadReply, BadUsage, ImageReply, ServiceError, Timeout, describe_error, read_reply
from sdturbo_ops.terraform import OutputsError, split_s3_uri, terraform_outputs

DEFAULT_INPUT_PREFIX = "async-input/"


@dataclass(frozen=True)
class Target:
    """Where requests go and results appear; any of it may be unknown until a flag or an output says it."""

    endpoint: str | None = None
    bucket: str | None = None
    input_prefix: str = DEFAULT_INPUT_PREFIX
    output_uri: str | None = None  # the prefix SageMaker writes outputs under (s3://bucket/async-output/)
    failure_uri: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Queued:
    inference_id: str
    input_uri: str
    output_uri: str
    failure_uri: str

    def as_json(self) -> str:
        return json.dumps({"inference_id": self.inference_id, "input": self.input_uri, "output": self.output_uri,
                           "failure": self.failure_uri})


def resolve_target(from_terraform: Path | None, **flags: str | None) -> Target:
    """Flags first, then the stack's Terraform outputs (``endpoint_name``, ``async_bucket``, ...)."""
    outputs: dict = {}
    if from_terraform is not None:
        try:
            outputs = terraform_outputs(from_terraform)
        except OutputsError as exc:
            raise BadUsage(str(exc)) from None
    names = {"endpoint": "endpoint_name", "bucket": "async_bucket", "input_prefix": "async_input_prefix",
             "output_uri": "async_output_uri", "failure_uri": "async_failure_uri", "region": "region"}
    values = {field: flags.get(field) or outputs.get(output) for field, output in names.items()}
    values["input_prefix"] = values["input_prefix"] or DEFAULT_INPUT_PREFIX
    return Target(**{key: str(value) if value is not None else None for key, value in values.items()})


def session(region: str | None):
    """A boto3 session that has a region and credentials, or a BadUsage saying which is missing and how to
    give it (boto3 itself would fail later, mid-request, with a traceback)."""
    import boto3

    aws = boto3.session.Session(region_name=region)
    if not aws.region_name:
        raise BadUsage("no AWS region: pass --region, --from-terraform infra/, or set AWS_REGION")
    if aws.get_credentials() is None:
        raise BadUsage("no AWS credentials found: set AWS_PROFILE, run `aws sso login`, or export "
                       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the standard AWS chain)")
    return aws


def submit(aws, target: Target, body: dict, inference_id: str | None, invocation_timeout: int,
           request_ttl: int, accept: str = ACCEPT["json"]) -> Queued:
    """Upload the request JSON and queue it with invoke_endpoint_async; ``accept`` is the reply's form, which
    SageMaker passes to the container as the Accept header and whose body becomes the output object."""
    if not target.endpoint or not target.bucket:
        raise BadUsage("give --endpoint and --bucket, or --from-terraform infra/")
    inference_id = inference_id or uuid.uuid4().hex
    key = f"{target.input_prefix}{inference_id}.json"
    aws.client("s3").put_object(Bucket=target.bucket, Key=key, Body=json.dumps(body).encode(),
                                ContentType="application/json")
    response = aws.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=target.endpoint, InputLocation=f"s3://{target.bucket}/{key}", ContentType="application/json",
        Accept=accept, InferenceId=inference_id, InvocationTimeoutSeconds=invocation_timeout,
        RequestTTLSeconds=request_ttl,
    )
    return Queued(response.get("InferenceId", inference_id), f"s3://{target.bucket}/{key}",
                  response["OutputLocation"], response.get("FailureLocation", ""))


def object_or_none(s3, uri: str) -> bytes | None:
    """The object's bytes, or None while it does not exist yet."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def result_of(s3, output_uri: str | None, failure_uri: str | None) -> dict | ImageReply | None:
    """The reply at the output location (JSON, or the image itself when it was asked for with Accept), or
    None while neither location holds anything.

    Raises:
        ServiceError: the failure location holds the endpoint's error (its message is kept).
        BadReply: the output is neither JSON nor an image.
    """
    output = object_or_none(s3, output_uri) if output_uri else None
    if output is not None:
        return read_reply(output, f"the output at {output_uri}")
    failure = object_or_none(s3, failure_uri) if failure_uri else None
    if failure is not None:
        raise ServiceError(f"the endpoint reported a failure ({failure_uri}): {describe_error('error', failure)}")
    return None


def find_by_id(s3, prefix_uri: str | None, inference_id: str) -> str | None:
    """The object SageMaker wrote for ``inference_id`` under a prefix: its file name is made from the id
    (``<id>.out``, ``<id>-error.out``), so a listing of that name finds it whatever the ending."""
    if not prefix_uri:
        return None
    bucket, prefix = split_s3_uri(prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + inference_id, MaxKeys=10).get("Contents", [])
    for item in listed:
        rest = item["Key"][len(prefix + inference_id):]
        if rest == "" or rest.startswith((".", "-error")):
            return f"s3://{bucket}/{item['Key']}"
    return None


def poll(s3, locate: Callable[[], tuple[str | None, str | None]], deadline_s: float, waiting_for: str,
         report: Callable[[str], None]) -> dict | ImageReply:
    """Look for the result with back-off until it exists or ``deadline_s`` passes.

    ``locate`` returns the (output, failure) locations to read, which may be found only later.
    """
    started = time.monotonic()
    delay = 1.0
    while True:
        output_uri, failure_uri = locate()
        reply = result_of(s3, output_uri, failure_uri)
        if reply is not None:
            return reply
        elapsed = time.monotonic() - started
        if elapsed >= deadline_s:
            where = output_uri or "its output location"
            raise Timeout(f"no result after {elapsed:.0f}s; it may still arrive at {where}"
                          + (f" (failure: {failure_uri})" if failure_uri else ""))
        report(f"waiting for {waiting_for}: {elapsed:.0f}s elapsed (from zero instances a cold start takes "
               f"several minutes; deadline {deadline_s:.0f}s)")
        time.sleep(min(delay, max(0.0, deadline_s - elapsed)))
        delay = min(delay * 1.6, 15.0)


def _event(message: dict) -> dict | None:
    """The JSON object an SQS message carries (raw, or wrapped by SNS), or None."""
    try:
        body = json.loads(message.get("Body", ""))
        if isinstance(body, dict) and body.get("Type") == "Notification":
            body = json.loads(body.get("Message", ""))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def notification(message: dict) -> dict | None:
    """SageMaker's async notification about a request inside an SQS message, or None."""
    event = _event(message)
    return event if event is not None and "inferenceId" in event else None


def is_test_notification(message: dict) -> bool:
    """SageMaker's test notification, which it publishes to both topics after every CreateEndpoint,
    UpdateEndpoint and UpdateEndpointWeightsAndCapacities (so on every deploy and scaling step): it is about
    no request, and "can simply be ignored" (SageMaker Developer Guide, asynchronous inference, "Create
    Endpoint")."""
    event = _event(message)
    return event is not None and event.get("eventName") == "TestNotification" and "inferenceId" not in event


def await_notification(sqs, queue_url: str, inference_id: str, deadline_s: float, waiting_for: str,
                       report: Callable[[str], None]) -> dict:
    """Long-poll an SQS queue subscribed to the success/error topics until the notification for
    ``inference_id`` arrives; it is deleted, and so are SageMaker's test notifications; every other message is
    left for its own reader."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= deadline_s:
            raise Timeout(f"no notification for {inference_id} on {queue_url} after {elapsed:.0f}s")
        wait = int(max(1, min(20, deadline_s - elapsed)))
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                       VisibilityTimeout=30).get("Messages", [])
        theirs = []
        for message in messages:
            event = notification(message)
            if (event is not None and event.get("inferenceId") == inference_id) or is_test_notification(message):
                # Ours, or addressed to no one: left on the queue, test notifications pile up with every
                # scaling step and crowd out the messages readers are waiting for.
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                if event is not None:
                    return event
                continue
            theirs.append(message)
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
        if theirs:
            time.sleep(1)  # only others' messages: let their readers have them
        else:
            report(f"waiting for {waiting_for}'s notification on the queue: {time.monotonic() - started:.0f}s "
                   f"elapsed (deadline {deadline_s:.0f}s)")


def no_notification(missing: Timeout, s3, output_uri: str | None, failure_uri: str | None) -> str:
    """What to tell when no notification came: whether the endpoint answered anyway (in S3), and where to look.
    Where SageMaker's async agent sends notifications from is not documented (infra/README.md, step 8)."""
    try:
        answered = result_of(s3, output_uri, None) is not None or (failure_uri and object_or_none(s3, failure_uri))
    except Exception:  # noqa: BLE001 - only a hint; the missing notification is the error
        answered = False
    if answered:
        return (f"{missing}. The endpoint did answer (the result is in S3), so the notification was lost between "
                "SageMaker and the queue: if the endpoint's VPC has no route to SNS, set enable_sns_endpoint = true "
                "(infra/variables.tf) and apply; otherwise check the queue's policy lets the stack's topics send")
    return (f"{missing}, and no result in S3 yet either: the request may still be queued or running (a cold start "
            "takes minutes); if the result appears without a notification, set enable_sns_endpoint = true "
            "(infra/variables.tf)")


def result_from_notification(s3, event: dict, output_uri: str | None, failure_uri: str | None) -> dict | ImageReply:
    """The reply a notification announces, read from S3 (the notification names the locations).

    Raises:
        ServiceError: the notification says the request failed.
    """
    locations = event.get("responseParameters") or {}
    output_uri = locations.get("outputLocation") or output_uri
    failure_uri = locations.get("failureLocation") or failure_uri
    if event.get("invocationStatus") == "Completed":
        reply = result_of(s3, output_uri, None)
        if reply is not None:
            return reply
        raise BadReply(f"the notification says completed, but {output_uri} holds nothing")
    result_of(s3, None, failure_uri)  # raises with the endpoint's own error when the failure object exists
    raise ServiceError(f"the endpoint reported a failure: {event.get('failureReason') or json.dumps(event)[:300]}")


def wait_for_result(aws, target: Target, inference_id: str | None, output_uri: str | None, failure_uri: str | None,
                    deadline_s: float, sqs_queue: str | None,
                    report: Callable[[str], None]) -> dict | ImageReply:
    """The reply of a queued request: from its notification on ``sqs_queue`` when one is named (and the
    inference id is known), else by polling S3; locations not given are found by the inference id."""
    s3 = aws.client("s3")
    waiting_for = target.endpoint or inference_id or output_uri
    if sqs_queue and inference_id:
        try:
            event = await_notification(aws.client("sqs"), sqs_queue, inference_id, deadline_s, waiting_for, report)
        except Timeout as missing:
            raise Timeout(no_notification(missing, s3, output_uri, failure_uri)) from None
        return result_from_notification(s3, event, output_uri, failure_uri)

    def locate() -> tuple[str | None, str | None]:
        return (output_uri or find_by_id(s3, target.output_uri, inference_id),
                failure_uri or find_by_id(s3, target.failure_uri, inference_id))

    return poll(s3, locate, deadline_s, waiting_for, report)
