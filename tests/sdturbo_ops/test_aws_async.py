"""The asynchronous endpoint from a client's side (sdturbo_ops/aws_async.py, invoke.py's async mode) against a
real HTTP S3 emulator (moto in server mode, on loopback), and a local async round trip: a fake SageMaker async
agent feeds requests to the real `serve` entrypoint."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from tests.support.aws_emulator import INLINE_LIMIT, included_response
from tests.support.moto_server import ASYNC_BUCKET
from tests.support.helpers import free_port, run_script
from tests.support.images import encode, picture


def png_reply(seed=7, size=(64, 48)) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "seed": seed, "width": size[0],
            "height": size[1], "format": "png"}


def queue_moto_results(moto, *results):
    """moto's API for what the next invoke_endpoint_async calls return (it writes them to S3 itself)."""
    request = urllib.request.Request(f"{moto['url']}/moto-api/static/sagemaker/async-endpoint-results",
                                     data=json.dumps({"results": list(results)}).encode(), method="POST")
    urllib.request.urlopen(request).read()


# ------------------------------------------------------------------ invoke async against moto
def async_args(tmp_path, *extra):
    return ["async", "a cat", "--seed", "7", "--endpoint", "sdturbo", "--bucket", ASYNC_BUCKET,
            "--out", str(tmp_path / "cat.png"), *extra]


# ------------------------------------------------------------------ a fake SageMaker async agent
class AsyncAgent:
    """Plays SageMaker's async front end + agent on loopback: InvokeEndpointAsync answers 202 with output and
    failure locations in the async bucket, then (unless ``silent``) fetches the request from S3, POSTs it
    to the container's /invocations after ``delay`` seconds (a queue, a cold start), writes the reply to
    the output (2xx) or failure (other) location, and, given ``notify`` (an SNS client and topic ARN),
    publishes SageMaker's notification of it. With ``inline`` the notification carries a reply of at most
    128 KB (IncludeInferenceResponseIn); without ``store`` the output is never written to S3, so a client
    that still reads it there finds nothing."""

    def __init__(self, s3, container_url: str | None, silent: bool = False, delay: float = 0.0, notify=None,
                 inline: bool = False, store: bool = True):
        self.s3, self.container_url, self.silent, self.delay, self.notify = s3, container_url, silent, delay, notify
        self.inline, self.store = inline, store
        self.threads: list[threading.Thread] = []
        self.invocations: list[str] = []  # the inference id of every InvokeEndpointAsync call
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                inference_id = self.headers.get("X-Amzn-SageMaker-Inference-Id") or uuid.uuid4().hex
                agent.invocations.append(inference_id)
                output = f"s3://{ASYNC_BUCKET}/async-output/{inference_id}.out"
                failure = f"s3://{ASYNC_BUCKET}/async-failure/{inference_id}-error.out"
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Amzn-SageMaker-OutputLocation", output)
                self.send_header("X-Amzn-SageMaker-FailureLocation", failure)
                body = json.dumps({"InferenceId": inference_id}).encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if not agent.silent:
                    args = (self.headers["X-Amzn-SageMaker-InputLocation"],
                            self.headers.get("X-Amzn-SageMaker-Content-Type", "application/octet-stream"),
                            output, failure, self.headers.get("X-Amzn-SageMaker-Accept"))
                    thread = threading.Thread(target=agent.process, args=args)
                    agent.threads.append(thread)
                    thread.start()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def process(self, input_uri: str, content_type: str, output_uri: str, failure_uri: str,
                accept: str | None) -> None:
        """One request as SageMaker's agent runs it: the caller's Accept goes to the container, and the
        reply's body, whatever its type, becomes the output object."""
        time.sleep(self.delay)
        bucket, key = input_uri[5:].split("/", 1)
        payload = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(f"{self.container_url}/invocations", data=payload, method="POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                target, body = output_uri, response.read()
        except urllib.error.HTTPError as err:
            target, body = failure_uri, err.read()
        bucket, key = target[5:].split("/", 1)
        if self.store or target != output_uri:
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        if self.notify is not None:
            sns, topic = self.notify
            done = target == output_uri
            event = {
                "inferenceId": Path(output_uri).name.removesuffix(".out"), "eventSource": "aws:sagemaker",
                "invocationStatus": "Completed" if done else "Failed",
                "requestParameters": {"endpointName": "sdturbo", "inputLocation": input_uri},
                "responseParameters": {"outputLocation": output_uri} if done else {"failureLocation": failure_uri},
            }
            if self.inline and len(body) <= INLINE_LIMIT:
                event["responseBody"] = included_response(body)
            sns.publish(TopicArn=topic, Message=json.dumps(event))

    def close(self):
        self.server.shutdown()
        for thread in self.threads:
            thread.join(30)


# ------------------------------------------------------------------ usage and configuration: one line, exit 2
def uploaded(moto, inference_id: str) -> int:
    return moto["s3"].list_objects_v2(Bucket=ASYNC_BUCKET, Prefix=f"async-input/{inference_id}").get("KeyCount", 0)


def one_clean_line(stderr: str) -> bool:
    return stderr.strip().count("\n") == 0 and stderr.startswith("error: ") and "Traceback" not in stderr


# ------------------------------------------------------------------ fetching a result later
def stack_outputs(tmp_path) -> str:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({name: {"value": value} for name, value in {
        "endpoint_name": "sdturbo", "async_bucket": ASYNC_BUCKET, "async_input_prefix": "async-input/",
        "async_output_uri": f"s3://{ASYNC_BUCKET}/async-output/",
        "async_failure_uri": f"s3://{ASYNC_BUCKET}/async-failure/", "region": "us-east-1"}.items()}))
    return str(outputs)


def test_invoke_async_uploads_the_request_and_decodes_the_output(moto, tmp_path):
    queue_moto_results(moto, {"data": json.dumps(png_reply())})
    result = run_script("invoke.py", *async_args(tmp_path, "--inference-id", "req-1"), env=moto["env"])
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "cat.png").size == (64, 48)
    request = moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key="async-input/req-1.json")["Body"].read()
    assert json.loads(request) == {"prompt": "a cat", "seed": 7}


def test_invoke_async_carries_the_image_inside_the_request_json(moto, tmp_path):
    source = tmp_path / "start.jpg"
    source.write_bytes(encode(picture(320, 256), "JPEG"))
    queue_moto_results(moto, {"data": json.dumps(png_reply())})
    result = run_script("invoke.py", *async_args(tmp_path, "--inference-id", "req-img", "--image", str(source),
                                                 "--strength", "0.75"), env=moto["env"])
    assert result.returncode == 0, result.stderr
    request = json.loads(moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key="async-input/req-img.json")["Body"].read())
    assert request == {"prompt": "a cat", "seed": 7, "strength": 0.75,
                       "image": base64.b64encode(source.read_bytes()).decode()}


def test_invoke_async_sends_a_negative_prompt_and_metadata_off(moto, tmp_path):
    queue_moto_results(moto, {"data": json.dumps(png_reply())})
    result = run_script("invoke.py", *async_args(tmp_path, "--inference-id", "req-neg", "--guidance-scale", "2",
                                                 "--negative-prompt", "fog", "--no-metadata"), env=moto["env"])
    assert result.returncode == 0, result.stderr
    request = json.loads(moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key="async-input/req-neg.json")["Body"].read())
    assert request == {"prompt": "a cat", "seed": 7, "guidance_scale": 2.0, "negative_prompt": "fog",
                       "metadata": False}


def test_invoke_with_an_unreadable_image_is_a_usage_error(moto, tmp_path):
    result = run_script("invoke.py", *async_args(tmp_path, "--image", str(tmp_path / "missing.png")), env=moto["env"])
    assert result.returncode == 2 and "missing.png" in result.stderr and "Traceback" not in result.stderr


def test_invoke_async_reports_a_failure_object(moto, tmp_path):
    queue_moto_results(moto, {"is_failure": True, "data": json.dumps(
        {"code": 400, "type": "InvalidRequest", "message": "invalid request: width: multiple of 8"})})
    result = run_script("invoke.py", *async_args(tmp_path), env=moto["env"])
    assert result.returncode == 1
    assert "width: multiple of 8" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cat.png").exists()


def test_invoke_async_no_wait_prints_the_locations(moto, tmp_path):
    queue_moto_results(moto, {"data": json.dumps(png_reply())})
    result = run_script("invoke.py", *async_args(tmp_path, "--no-wait"), env=moto["env"])
    assert result.returncode == 0, result.stderr
    locations = json.loads(result.stdout)
    assert locations["output"].startswith("s3://")
    assert locations["input"].startswith(f"s3://{ASYNC_BUCKET}/async-input/")


def test_invoke_async_reads_names_from_terraform_outputs(moto, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"endpoint_name": {"value": "sdturbo"}, "async_bucket": {"value": ASYNC_BUCKET},
                                   "async_input_prefix": {"value": "async-input/"}, "region": {"value": "us-east-1"}}))
    queue_moto_results(moto, {"data": json.dumps(png_reply())})
    result = run_script("invoke.py", "async", "a cat", "--from-terraform", str(outputs),
                        "--out", str(tmp_path / "c.png"), env=moto["env"])
    assert result.returncode == 0, result.stderr


def test_invoke_async_without_a_target_is_a_usage_error(moto, tmp_path):
    result = run_script("invoke.py", "async", "a cat", env=moto["env"])
    assert result.returncode == 2 and "--from-terraform" in result.stderr


@pytest.mark.slow
def test_invoke_async_gives_up_at_the_deadline(moto, tmp_path):
    agent = AsyncAgent(moto["s3"], None, silent=True)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        result = run_script("invoke.py", *async_args(tmp_path, "--deadline", "3"), env=env)
    finally:
        agent.close()
    assert result.returncode == 3
    assert "no result after" in result.stderr and "waiting for sdturbo" in result.stderr


@pytest.mark.integration
def test_local_async_round_trip_through_the_real_container_entrypoint(moto, tmp_path, serve):
    """Client, payload format and container contract together: the unmodified CLI gets a valid PNG."""
    agent = AsyncAgent(moto["s3"], serve.url)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        ok = run_script("invoke.py", *async_args(tmp_path, "--width", "256", "--num-images", "2"), env=env)
        bad = run_script("invoke.py", "async", "a cat", "--width", "100", "--endpoint", "sdturbo",
                         "--bucket", ASYNC_BUCKET, "--out", str(tmp_path / "bad.png"), env=env)
    finally:
        agent.close()
    assert ok.returncode == 0, ok.stderr
    first, second = Image.open(tmp_path / "cat.png"), Image.open(tmp_path / "cat-1.png")
    assert first.format == "PNG" and first.size == second.size == (256, 512)
    # refused by the handler's own schema before anything is uploaded or queued
    assert bad.returncode == 2 and "width" in bad.stderr and len(agent.invocations) == 1


@pytest.mark.integration
def test_local_async_round_trip_of_the_image_itself(moto, tmp_path, serve):
    """--accept image: invoke_endpoint_async carries Accept: image/webp, the container answers the WebP itself,
    the output object is that file, and the CLI saves it as it is; `result` reads it back the same way."""
    agent = AsyncAgent(moto["s3"], serve.url)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        out = tmp_path / "cat.webp"
        ok = run_script("invoke.py", "async", "a cat", "--seed", "7", "--width", "256", "--endpoint", "sdturbo",
                        "--bucket", ASYNC_BUCKET, "--inference-id", "as-image", "--accept", "image",
                        "--out", str(out), env=env)
        again = run_script("invoke.py", "result", f"s3://{ASYNC_BUCKET}/async-output/as-image.out",
                           "--out", str(tmp_path / "again.webp"), env=env)
    finally:
        agent.close()
    assert ok.returncode == 0, ok.stderr
    stored = moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key="async-output/as-image.out")["Body"].read()
    assert stored == out.read_bytes() and Image.open(out).format == "WEBP" and Image.open(out).size == (256, 512)
    assert again.returncode == 0 and (tmp_path / "again.webp").read_bytes() == stored, again.stderr


@pytest.mark.integration
def test_local_async_image_to_image_round_trip(moto, tmp_path, serve):
    """The image goes up inside the request JSON in S3, through the agent to /invocations, and the
    image-to-image result (the image's size) comes back; a damaged image is refused before it is sent."""
    source, broken = tmp_path / "start.png", tmp_path / "broken.png"
    source.write_bytes(encode(picture(384, 256)))
    broken.write_bytes(source.read_bytes()[:300])
    agent = AsyncAgent(moto["s3"], serve.url)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        ok = run_script("invoke.py", *async_args(tmp_path, "--image", str(source), "--strength", "0.5"), env=env)
        bad = run_script("invoke.py", "async", "a cat", "--image", str(broken), "--endpoint", "sdturbo",
                         "--bucket", ASYNC_BUCKET, "--out", str(tmp_path / "bad.png"), env=env)
    finally:
        agent.close()
    assert ok.returncode == 0, ok.stderr
    assert Image.open(tmp_path / "cat.png").size == (384, 256)
    assert bad.returncode == 2 and "image" in bad.stderr and "truncated" in bad.stderr
    assert len(agent.invocations) == 1


@pytest.mark.parametrize("remove, add, says", [
    (("AWS_DEFAULT_REGION", "AWS_REGION"), {}, "no AWS region"),
    (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), {}, "no AWS credentials"),
], ids=["no-region", "no-credentials"])
def test_invoke_async_without_aws_configuration_says_what_is_missing(moto, tmp_path, remove, add, says):
    env = {key: value for key, value in moto["env"].items() if key not in remove}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), **add)
    result = run_script("invoke.py", *async_args(tmp_path, "--inference-id", "unconfigured"), env=env)
    assert result.returncode == 2 and one_clean_line(result.stderr) and says in result.stderr, result.stderr
    assert uploaded(moto, "unconfigured") == 0


@pytest.mark.parametrize("bad, field, status", [
    (["--width", "513"], "width", 400),
    (["--num-images", "9"], "num_images", 400),
    (["--strength", "0.5"], "strength", 400),  # strength without an image
    (["--steps", "1", "--strength", "0.5", "--image", "START"], "strength", 400),  # int(1 x 0.5) = 0 steps
    (["--image", "BROKEN"], "image", 400),
    (["--negative-prompt", "fog"], "negative_prompt", 422),  # no guidance, so it would be ignored
], ids=["width", "num-images", "strength-alone", "no-steps-left", "truncated-image", "negative-prompt-unguided"])
def test_invoke_async_checks_the_request_with_the_handlers_schema_before_any_aws_call(moto, tmp_path, bad, field,
                                                                                      status):
    """What the endpoint would refuse (400, 422) is refused here: no upload, no queued request, and no
    instance started from zero just to say so."""
    start, broken = tmp_path / "start.png", tmp_path / "broken.png"
    start.write_bytes(encode(picture(256, 256)))
    broken.write_bytes(start.read_bytes()[:300])
    bad = [{"START": str(start), "BROKEN": str(broken)}.get(word, word) for word in bad]
    agent = AsyncAgent(moto["s3"], None, silent=True)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        # a short --timeout: a request sent anyway waits for a reply the silent agent never writes
        result = run_script("invoke.py", *async_args(tmp_path, "--inference-id", "refused", "--timeout", "5", *bad),
                            env=env)
    finally:
        agent.close()
    assert result.returncode == 2 and one_clean_line(result.stderr), result.stderr
    assert f"the endpoint would refuse this request with {status}" in result.stderr and field in result.stderr
    assert uploaded(moto, "refused") == 0 and agent.invocations == []


@pytest.mark.integration
def test_a_no_wait_request_is_fetched_later_by_its_id_or_its_output_location(moto, tmp_path, serve):
    outputs = stack_outputs(tmp_path)
    agent = AsyncAgent(moto["s3"], serve.url, delay=3)  # still queued when `result` first looks
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        queued = run_script("invoke.py", "async", "a cat", "--seed", "5", "--width", "256", "--from-terraform",
                            outputs, "--no-wait", env=env)
        assert queued.returncode == 0, queued.stderr
        receipt = json.loads(queued.stdout)
        by_id = run_script("invoke.py", "result", receipt["inference_id"], "--from-terraform", outputs,
                           "--out", str(tmp_path / "later.png"), "--timeout", "60", env=env)
        by_uri = run_script("invoke.py", "result", receipt["output"], "--out", str(tmp_path / "uri.png"), env=env)
        # a request some other client queued without checking it: its failure is found the same way
        moto["s3"].put_object(Bucket=ASYNC_BUCKET, Key="async-input/unchecked.json", Body=b'{"prompt": "x", "width": 7}')
        import boto3

        boto3.client("sagemaker-runtime", endpoint_url=agent.url, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").invoke_endpoint_async(
            EndpointName="sdturbo", InputLocation=f"s3://{ASYNC_BUCKET}/async-input/unchecked.json",
            InferenceId="unchecked")
        failed = run_script("invoke.py", "result", "unchecked", "--from-terraform", outputs, "--timeout", "60", env=env)
        missing = run_script("invoke.py", "result", "never-queued", "--from-terraform", outputs, "--timeout", "2",
                             env=env)
    finally:
        agent.close()
    assert by_id.returncode == 0, by_id.stderr
    assert "waiting for" in by_id.stderr  # progress while it waits
    assert Image.open(tmp_path / "later.png").size == (256, 512)
    assert by_uri.returncode == 0 and (tmp_path / "uri.png").read_bytes() == (tmp_path / "later.png").read_bytes()
    assert failed.returncode == 1 and "width" in failed.stderr, failed.stderr
    assert missing.returncode == 3 and "no result after" in missing.stderr


def test_result_saves_an_output_that_is_the_image_itself(moto, tmp_path):
    """An output asked for with Accept: image/... is the file itself (no JSON, no seed): saved as it is, the
    name corrected to its format as for a JSON reply."""
    jpeg = encode(picture(64, 48), "JPEG")
    moto["s3"].put_object(Bucket=ASYNC_BUCKET, Key="async-output/img.out", Body=jpeg)
    result = run_script("invoke.py", "result", f"s3://{ASYNC_BUCKET}/async-output/img.out",
                        "--out", str(tmp_path / "cat.png"), env=moto["env"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cat.jpg").read_bytes() == jpeg and "pass --seed" in result.stdout


def test_result_by_id_needs_to_know_where_outputs_go(moto, tmp_path):
    result = run_script("invoke.py", "result", "some-id", env=moto["env"])
    assert result.returncode == 2 and one_clean_line(result.stderr) and "--from-terraform" in result.stderr


@pytest.mark.integration
def test_async_can_wait_on_the_notification_queue(moto, tmp_path, serve):
    """--sqs-queue: a queue subscribed to the success and error topics, as an application would have it; the
    CLI takes its own notification and leaves the others' messages for them."""
    import boto3

    clients = {name: boto3.client(name, endpoint_url=moto["url"], region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
               for name in ("sns", "sqs")}
    topic = clients["sns"].create_topic(Name="sdturbo-success")["TopicArn"]
    queue = clients["sqs"].create_queue(QueueName="my-app-results")["QueueUrl"]
    arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    clients["sns"].publish(TopicArn=topic, Message=json.dumps({"inferenceId": "someone-else",
                                                               "invocationStatus": "Completed"}))
    agent = AsyncAgent(moto["s3"], serve.url, notify=(clients["sns"], topic))
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        result = run_script("invoke.py", *async_args(tmp_path, "--width", "256", "--sqs-queue", queue,
                                                     "--timeout", "60"), env=env)
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "cat.png").size == (256, 512)
    left = clients["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(json.loads(m["Body"])["Message"])["inferenceId"] for m in left] == ["someone-else"]


def test_waiting_on_the_queue_drops_sagemaker_s_test_notifications(moto):
    """SageMaker publishes a test notification to both result topics after every endpoint update and every
    scaling step: it is about no request. The client skips it and deletes it, so the queue does not fill with
    them; another reader's notification stays."""
    import boto3

    from sdturbo_ops import aws_async

    clients = {name: boto3.client(name, endpoint_url=moto["url"], region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
               for name in ("sns", "sqs")}
    topic = clients["sns"].create_topic(Name="sdturbo-async-error")["TopicArn"]
    queue = clients["sqs"].create_queue(QueueName=f"results-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    test_notification = {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
    for event in [test_notification, test_notification, {"inferenceId": "someone-else", "invocationStatus": "Failed"},
                  {"inferenceId": "mine", "invocationStatus": "Failed"}]:
        clients["sns"].publish(TopicArn=topic, Message=json.dumps(event))

    event = aws_async.await_notification(clients["sqs"], queue, "mine", 30, "mine", report=lambda line: None)

    assert event["inferenceId"] == "mine"
    left = clients["sqs"].receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(json.loads(m["Body"])["Message"]) for m in left] == [
        {"inferenceId": "someone-else", "invocationStatus": "Failed"}]


# ------------------------------------------------------------------ the result inside the notification
def notification_queue(moto):
    """A queue subscribed to a success topic, as an application (or step 8's smoke queue) has it."""
    import boto3

    clients = {name: boto3.client(name, endpoint_url=moto["url"], region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
               for name in ("sns", "sqs")}
    topic = clients["sns"].create_topic(Name=f"results-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = clients["sqs"].create_queue(QueueName=f"app-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = clients["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return clients["sns"], topic, queue


@pytest.mark.integration
def test_async_takes_the_image_from_the_notification_without_reading_s3(moto, tmp_path, serve):
    """The agent includes the reply in the notification and writes no output object at all: the client can
    only have its image from the message."""
    sns, topic, queue = notification_queue(moto)
    agent = AsyncAgent(moto["s3"], serve.url, notify=(sns, topic), inline=True, store=False)
    out = tmp_path / "cat.webp"
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        result = run_script("invoke.py", "async", "a cat", "--seed", "7", "--width", "256", "--height", "256",
                            "--endpoint", "sdturbo", "--bucket", ASYNC_BUCKET, "--inference-id", "inline",
                            "--sqs-queue", queue, "--timeout", "60", "--out", str(out), env=env)
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    assert (Image.open(out).format, Image.open(out).size) == ("WEBP", (256, 256))
    assert moto["s3"].list_objects_v2(Bucket=ASYNC_BUCKET, Prefix="async-output/inline").get("KeyCount", 0) == 0


@pytest.mark.integration
def test_a_reply_over_128_kb_comes_from_s3_as_before(moto, tmp_path, serve):
    """A 512x512 PNG of the tiny model is ~630 KB: SageMaker leaves it out of the message, the client reads S3."""
    sns, topic, queue = notification_queue(moto)
    agent = AsyncAgent(moto["s3"], serve.url, notify=(sns, topic), inline=True)
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        result = run_script("invoke.py", *async_args(tmp_path, "--sqs-queue", queue, "--timeout", "60"), env=env)
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "cat.png").size == (512, 512)


def test_an_included_error_is_reported_without_reading_s3():
    from sdturbo_ops import aws_async
    from sdturbo_ops.client import ServiceError

    error = {"code": 400, "type": "InvalidRequest", "message": "invalid request: prompt: too long"}
    event = {"inferenceId": "x", "invocationStatus": "Failed", "responseBody": included_response(json.dumps(error).encode())}
    with pytest.raises(ServiceError, match="InvalidRequest: invalid request: prompt: too long"):
        aws_async.result_from_notification(None, event, None, None)  # no S3 client: it must not need one


@pytest.mark.parametrize("body, expected", [
    ({"content": base64.b64encode(b"\x89PNG\r\n\x1a\n...").decode(), "encoding": "BASE64"}, b"\x89PNG\r\n\x1a\n..."),
    ({"content": '{"image": "..."}', "encoding": "UTF-8"}, b'{"image": "..."}'),
    ('{"image": "..."}', b'{"image": "..."}'),
    ({"content": "not base64!", "encoding": "BASE64"}, None),
    ({"encoding": "BASE64"}, None),
    (None, None),
], ids=["base64", "text", "plain-string", "broken-base64", "no-content", "absent"])
def test_inline_response_is_read_in_each_shape_and_absent_otherwise(body, expected):
    from sdturbo_ops import aws_async

    event = {"inferenceId": "x", "invocationStatus": "Completed"} | ({"responseBody": body} if body else {})
    assert aws_async.inline_response(event) == expected


@pytest.mark.parametrize("fmt, fits", [("jpeg", True), ("webp", True), ("png", False)])
def test_a_512_photograph_fits_the_notification_as_webp_or_jpeg_not_as_png(fmt, fits):
    """The handler's own encoder at its shipped settings, on a 512x512 photograph (matplotlib's sample
    grace_hopper.jpg, cropped): the reply, as JSON with base64 and as the image itself, against 128 KB."""
    import matplotlib.cbook
    import numpy as np

    from handler.encode import ImageEncoder
    from handler.settings import EngineSettings

    photo = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))[:512, :512]
    encoder = ImageEncoder(EngineSettings())
    try:
        image = encoder.hand_over(np.ascontiguousarray(photo), fmt, now=False)()
    finally:
        encoder.close()
    reply = json.dumps({"image": base64.b64encode(image).decode(), "seed": 1, "width": 512, "height": 512,
                        "format": fmt}, separators=(",", ":")).encode()
    assert (len(image) <= INLINE_LIMIT, len(reply) <= INLINE_LIMIT) == (fits, fits), (len(image), len(reply))


# ------------------------------------------------------------------ warming the endpoint ahead of a burst
@pytest.mark.integration
def test_warm_queues_one_small_request_and_waits_until_it_is_answered(moto, tmp_path, serve):
    from sdturbo_ops.aws_async import WARM_REQUEST

    agent = AsyncAgent(moto["s3"], serve.url, delay=1.0)  # a queue before the container answers
    try:
        env = {**moto["env"], "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": agent.url}
        result = run_script("invoke.py", "warm", "--endpoint", "sdturbo", "--bucket", ASYNC_BUCKET, env=env)
    finally:
        agent.close()
    assert result.returncode == 0, result.stderr
    (inference_id,) = agent.invocations
    assert inference_id.startswith("warm-") and f"answered {inference_id} after" in result.stdout
    uploaded = moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key=f"async-input/{inference_id}.json")["Body"].read()
    assert json.loads(uploaded) == WARM_REQUEST
    assert moto["s3"].get_object(Bucket=ASYNC_BUCKET, Key=f"async-output/{inference_id}.out")["Body"].read()
