"""publish.py and invoke.py against a real HTTP S3 emulator (moto in server mode, on loopback), and a local
async round trip: a fake SageMaker async agent feeds requests to the real `serve` entrypoint."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import build_archive, decode_image, free_port, run_script
from tests.test_image_input import encode, picture

ASYNC_BUCKET = "test-async"
ARTIFACTS_BUCKET = "test-artifacts"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's S3 + SageMaker Runtime over HTTP on a free loopback port, with fake credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    for bucket in (ASYNC_BUCKET, ARTIFACTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    yield {"url": url, "env": env, "s3": s3}
    server.stop()


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


# ------------------------------------------------------------------ publish
def test_publish_uploads_every_file_intact(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    result = run_script("publish.py", str(archive), "--bucket", ARTIFACTS_BUCKET, "--prefix", "models/sdturbo/v1/",
                        env=moto["env"])
    assert result.returncode == 0, result.stderr
    local = {p.relative_to(archive).as_posix(): p for p in archive.rglob("*") if p.is_file()}
    listed = moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="models/sdturbo/v1/")["Contents"]
    remote = {o["Key"].removeprefix("models/sdturbo/v1/") for o in listed}
    assert remote == set(local)
    for name, path in local.items():
        body = moto["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=f"models/sdturbo/v1/{name}")["Body"].read()
        assert body == path.read_bytes(), name
    assert "MAR-INF/MANIFEST.json" in remote and any(n.endswith(".safetensors") for n in remote)


def test_publish_takes_the_location_from_terraform_outputs(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"model_data_uri": {"value": f"s3://{ARTIFACTS_BUCKET}/models/sdturbo/v9/"},
                                   "region": {"value": "us-east-1"}}))
    result = run_script("publish.py", str(archive), "--from-terraform", str(outputs), env=moto["env"])
    assert result.returncode == 0, result.stderr
    listed = moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="models/sdturbo/v9/")["Contents"]
    keys = [o["Key"] for o in listed]
    assert "models/sdturbo/v9/MAR-INF/MANIFEST.json" in keys


def test_publish_dry_run_uploads_nothing(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    result = run_script("publish.py", str(archive), "--bucket", ARTIFACTS_BUCKET, "--prefix", "dry/", "--dry-run",
                        env=moto["env"])
    assert result.returncode == 0 and "MAR-INF/MANIFEST.json" in result.stdout
    assert moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="dry/").get("KeyCount", 0) == 0


def test_publish_refuses_a_folder_that_is_not_an_archive(moto, tmp_path):
    result = run_script("publish.py", str(tmp_path), "--bucket", ARTIFACTS_BUCKET, "--prefix", "x/", env=moto["env"])
    assert result.returncode == 2 and "make mar" in result.stderr


# ------------------------------------------------------------------ invoke async against moto
def async_args(tmp_path, *extra):
    return ["async", "a cat", "--seed", "7", "--endpoint", "sdturbo", "--bucket", ASYNC_BUCKET,
            "--out", str(tmp_path / "cat.png"), *extra]


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


# ------------------------------------------------------------------ a fake SageMaker async agent
class AsyncAgent:
    """Plays SageMaker's async front end + agent on loopback: InvokeEndpointAsync answers 202 with output and
    failure locations in the async bucket, then (unless ``silent``) fetches the request from S3, POSTs it
    to the container's /invocations after ``delay`` seconds (a queue, a cold start), writes the reply to
    the output (2xx) or failure (other) location, and, given ``notify`` (an SNS client and topic ARN),
    publishes SageMaker's notification of it."""

    def __init__(self, s3, container_url: str | None, silent: bool = False, delay: float = 0.0, notify=None):
        self.s3, self.container_url, self.silent, self.delay, self.notify = s3, container_url, silent, delay, notify
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
                            output, failure)
                    thread = threading.Thread(target=agent.process, args=args)
                    agent.threads.append(thread)
                    thread.start()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def process(self, input_uri: str, content_type: str, output_uri: str, failure_uri: str) -> None:
        time.sleep(self.delay)
        bucket, key = input_uri[5:].split("/", 1)
        payload = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        request = urllib.request.Request(f"{self.container_url}/invocations", data=payload, method="POST",
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                target, body = output_uri, response.read()
        except urllib.error.HTTPError as err:
            target, body = failure_uri, err.read()
        bucket, key = target[5:].split("/", 1)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        if self.notify is not None:
            sns, topic = self.notify
            done = target == output_uri
            sns.publish(TopicArn=topic, Message=json.dumps({
                "inferenceId": Path(output_uri).name.removesuffix(".out"), "eventSource": "aws:sagemaker",
                "invocationStatus": "Completed" if done else "Failed",
                "requestParameters": {"endpointName": "sdturbo", "inputLocation": input_uri},
                "responseParameters": {"outputLocation": output_uri} if done else {"failureLocation": failure_uri},
            }))

    def close(self):
        self.server.shutdown()
        for thread in self.threads:
            thread.join(30)


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


@pytest.mark.integration
def test_local_mode_posts_to_torchserve(torchserve, tmp_path):
    env = dict(os.environ)
    ok = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url,
                    "--out", str(tmp_path / "a.png"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert decode_image(base64.b64encode((tmp_path / "a.png").read_bytes()).decode()).size == (512, 512)
    via_invocations = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url, "--path",
                                 "/invocations", "--out", str(tmp_path / "b.png"), env=env)
    assert via_invocations.returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    bad = run_script("invoke.py", "local", "a cat", "--width", "100", "--url", torchserve.url, env=env)
    assert bad.returncode == 1 and "400" in bad.stderr and "width" in bad.stderr
    source = tmp_path / "start.webp"
    source.write_bytes(encode(picture(256, 320), "WEBP"))
    image_args = ["local", "a cat", "--seed", "3", "--image", str(source), "--strength", "0.5", "--url", torchserve.url]
    first = run_script("invoke.py", *image_args, "--out", str(tmp_path / "i1.png"), env=env)
    second = run_script("invoke.py", *image_args, "--out", str(tmp_path / "i2.png"), env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert Image.open(tmp_path / "i1.png").size == (256, 320)
    assert (tmp_path / "i1.png").read_bytes() == (tmp_path / "i2.png").read_bytes()  # same seed, image, params


def test_local_mode_explains_a_missing_server(tmp_path):
    result = run_script("invoke.py", "local", "a cat", "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 1 and "make serve" in result.stderr


def test_decode_writes_images_from_a_saved_reply(tmp_path):
    (tmp_path / "reply.json").write_text(json.dumps(png_reply()))
    result = run_script("invoke.py", "decode", str(tmp_path / "reply.json"), "--out", str(tmp_path / "x.png"),
                        env=dict(os.environ))
    assert result.returncode == 0 and Image.open(tmp_path / "x.png").size == (64, 48)
    (tmp_path / "err.json").write_text(json.dumps({"code": 400, "message": "bad"}))
    assert run_script("invoke.py", "decode", str(tmp_path / "err.json"), env=dict(os.environ)).returncode == 1


# ------------------------------------------------------------------ usage and configuration: one line, exit 2
def uploaded(moto, inference_id: str) -> int:
    return moto["s3"].list_objects_v2(Bucket=ASYNC_BUCKET, Prefix=f"async-input/{inference_id}").get("KeyCount", 0)


def one_clean_line(stderr: str) -> bool:
    return stderr.strip().count("\n") == 0 and stderr.startswith("error: ") and "Traceback" not in stderr


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


@pytest.mark.parametrize("bad, field", [
    (["--width", "513"], "width"),
    (["--num-images", "9"], "num_images"),
    (["--strength", "0.5"], "strength"),  # strength without an image
    (["--steps", "1", "--strength", "0.5", "--image", "START"], "strength"),  # int(1 x 0.5) = 0 steps
    (["--image", "BROKEN"], "image"),
], ids=["width", "num-images", "strength-alone", "no-steps-left", "truncated-image"])
def test_invoke_async_checks_the_request_with_the_handlers_schema_before_any_aws_call(moto, tmp_path, bad, field):
    """What the endpoint would answer with 400 is refused here: no upload, no queued request, and no
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
    assert "the endpoint would refuse this request with 400" in result.stderr and field in result.stderr
    assert uploaded(moto, "refused") == 0 and agent.invocations == []


def test_terraform_errors_are_shown_whole_and_without_colour(moto, tmp_path):
    stack = tmp_path / "infra"
    stack.mkdir()
    (stack / "main.tf").write_text('output "broken" {\n  value =\n}\n')
    result = run_script("invoke.py", "async", "a cat", "--from-terraform", str(stack), env=moto["env"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: Invalid expression" in result.stderr  # the head of terraform's diagnostic ...
    assert "Expected the start of an expression" in result.stderr  # ... and its end
    assert "\x1b[" not in result.stderr


# ------------------------------------------------------------------ fetching a result later
def stack_outputs(tmp_path) -> str:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({name: {"value": value} for name, value in {
        "endpoint_name": "sdturbo", "async_bucket": ASYNC_BUCKET, "async_input_prefix": "async-input/",
        "async_output_uri": f"s3://{ASYNC_BUCKET}/async-output/",
        "async_failure_uri": f"s3://{ASYNC_BUCKET}/async-failure/", "region": "us-east-1"}.items()}))
    return str(outputs)


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


# ------------------------------------------------------------------ file names and formats
def test_local_refuses_a_file_name_that_contradicts_the_format(tmp_path):
    """JPEG bytes in cat.png would open in some viewers and not in others: refused before any request."""
    result = run_script("invoke.py", "local", "a cat", "--format", "jpeg", "--out", str(tmp_path / "cat.png"),
                        "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 2 and one_clean_line(result.stderr) and "cat.jpg" in result.stderr, result.stderr
    assert not (tmp_path / "cat.png").exists()


def test_local_refuses_a_file_ending_the_service_cannot_write(tmp_path):
    """`make predict OUT=x.gif` once wrote PNG bytes into x.gif without a word."""
    result = run_script("invoke.py", "local", "a cat", "--out", str(tmp_path / "x.gif"),
                        "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 2 and one_clean_line(result.stderr), result.stderr
    assert ".gif" in result.stderr and ".png" in result.stderr and not (tmp_path / "x.gif").exists()


@pytest.mark.integration
def test_the_file_name_picks_the_format(torchserve, tmp_path):
    result = run_script("invoke.py", "local", "a cat", "--url", torchserve.url, "--out", str(tmp_path / "cat.jpg"),
                        env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "cat.jpg").format == "JPEG"


def test_decode_names_the_file_after_the_replys_format(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 90, 200)).save(buffer, format="JPEG")
    reply = {"image": base64.b64encode(buffer.getvalue()).decode(), "seed": 1, "format": "jpeg"}
    (tmp_path / "reply.json").write_text(json.dumps(reply))
    result = run_script("invoke.py", "decode", str(tmp_path / "reply.json"), "--out", str(tmp_path / "x.png"),
                        env=dict(os.environ))
    assert result.returncode == 0 and "x.jpg" in result.stdout, result.stdout + result.stderr
    assert Image.open(tmp_path / "x.jpg").format == "JPEG" and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("content", ['{"foo": 1}', "[1, 2]", "not json at all"])
def test_decode_of_something_that_is_not_a_reply_exits_4_with_one_clean_line(tmp_path, content):
    (tmp_path / "thing.json").write_text(content)
    result = run_script("invoke.py", "decode", str(tmp_path / "thing.json"), env=dict(os.environ))
    assert result.returncode == 4 and one_clean_line(result.stderr), result.stderr
    assert "error: error:" not in result.stderr
