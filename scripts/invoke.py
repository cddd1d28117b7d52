#!/usr/bin/env python3
"""Ask sdturbo-serve for images, locally or on SageMaker, and write them to files.

  invoke.py local "a cat wearing sunglasses" --seed 42 --out cat.png
      POST to a running TorchServe (/predictions/sdturbo, or --path /invocations).
  invoke.py local "the same cat, as a watercolour" --image cat.png --strength 0.5 --out paint.png
      Image-to-image: the file travels inside the request JSON as base64 (in S3 too, with async).
  invoke.py async "a cat wearing sunglasses" --from-terraform infra/ --out cat.png
      Upload the request to S3, call invoke_endpoint_async, wait for the output (or failure) object.
      Credentials come from the standard AWS chain (environment, profile, SSO, instance role).
  invoke.py decode reply.json --out cat.png
      Turn a saved JSON reply into image files.

With several images (--num-images 3 --out cat.png) the files are cat.png, cat-1.png, cat-2.png.

Exit codes: 0 images written, 1 the service reported an error, 2 bad usage, 3 timed out,
4 the reply could not be read.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terraform_outputs import OutputsError, split_s3_uri, terraform_outputs  # noqa: E402

EXIT_OK, EXIT_SERVICE_ERROR, EXIT_USAGE, EXIT_TIMEOUT, EXIT_BAD_REPLY = 0, 1, 2, 3, 4
REQUEST_FIELDS = ("seed", "num_inference_steps", "guidance_scale", "width", "height", "num_images", "output_format",
                  "strength")


class CliError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def request_body(args: argparse.Namespace) -> dict:
    """The JSON request: the prompt plus only the fields the caller set (the server owns the defaults)."""
    body = {"prompt": args.prompt}
    for name in REQUEST_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    if args.image is not None:
        try:
            body["image"] = base64.b64encode(args.image.read_bytes()).decode("ascii")
        except OSError as exc:
            raise CliError(f"cannot read --image {args.image}: {exc.strerror or exc}", EXIT_USAGE) from None
    return body


def write_images(reply: dict, out: Path) -> list[Path]:
    """Decode ``image``/``images`` from a reply into ``out`` (and numbered siblings)."""
    images = reply.get("images") or ([reply["image"]] if "image" in reply else [])
    if not images:
        raise CliError(f"the reply holds no image: {json.dumps(reply)[:300]}", EXIT_BAD_REPLY)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(images):
        path = out if index == 0 else out.with_name(f"{out.stem}-{index}{out.suffix}")
        try:
            path.write_bytes(base64.b64decode(data, validate=True))
        except ValueError as exc:
            raise CliError(f"image {index} is not valid base64: {exc}", EXIT_BAD_REPLY) from None
        paths.append(path)
    return paths


def describe_error(status: int | str, payload: bytes | str) -> str:
    """One readable line from a JSON error body (ours or TorchServe's), or the raw text."""
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status}: {text.strip()[:500]}"
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or json.dumps(body)
        kind = body.get("type")
        return f"{status} {kind}: {message}" if kind else f"{status}: {message}"
    return f"{status}: {text[:500]}"


def post_local(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as err:
        raise CliError(describe_error(err.code, err.read()), EXIT_SERVICE_ERROR) from None
    except TimeoutError:
        raise CliError(f"no reply from {url} within {timeout:.0f}s", EXIT_TIMEOUT) from None
    except urllib.error.URLError as err:
        raise CliError(f"cannot reach {url}: {err.reason} (is TorchServe running? `make serve`)",
                       EXIT_SERVICE_ERROR) from None
    try:
        return json.loads(payload)
    except ValueError:
        raise CliError(f"the reply is not JSON: {payload[:200]!r}", EXIT_BAD_REPLY) from None


def cmd_local(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + args.path
    started = time.monotonic()
    reply = post_local(url, request_body(args), args.timeout)
    paths = write_images(reply, args.out)
    print(f"wrote {', '.join(map(str, paths))} (seed {reply.get('seed')}, {time.monotonic() - started:.2f}s)")
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        reply = json.loads(args.reply.read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.reply}: {exc}", EXIT_BAD_REPLY) from None
    if not isinstance(reply, dict):
        raise CliError(f"{args.reply} does not hold a JSON object", EXIT_BAD_REPLY)
    if "image" not in reply and "images" not in reply:
        raise CliError(describe_error(reply.get("code", "error"), json.dumps(reply)), EXIT_SERVICE_ERROR)
    paths = write_images(reply, args.out)
    print(f"wrote {', '.join(map(str, paths))}")
    return EXIT_OK


def resolve_async_target(args: argparse.Namespace) -> tuple[str, str, str, str | None]:
    """(endpoint, bucket, input prefix, region) from the flags, then the Terraform outputs."""
    outputs: dict = {}
    if args.from_terraform:
        try:
            outputs = terraform_outputs(args.from_terraform)
        except OutputsError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    endpoint = args.endpoint or outputs.get("endpoint_name")
    bucket = args.bucket or outputs.get("async_bucket")
    prefix = args.input_prefix or outputs.get("async_input_prefix") or "async-input/"
    region = args.region or outputs.get("region")
    if not endpoint or not bucket:
        raise CliError("give --endpoint and --bucket, or --from-terraform infra/", EXIT_USAGE)
    return str(endpoint), str(bucket), str(prefix), region


def s3_object_or_none(s3, uri: str) -> bytes | None:
    """The object's bytes, or None while it does not exist yet."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def wait_for_result(s3, output_uri: str, failure_uri: str, deadline_s: float, endpoint: str) -> dict:
    """Poll the output and failure locations with backoff until one exists or the deadline passes."""
    started = time.monotonic()
    delay = 1.0
    while True:
        output = s3_object_or_none(s3, output_uri)
        if output is not None:
            try:
                return json.loads(output)
            except ValueError:
                raise CliError(f"the output at {output_uri} is not JSON: {output[:200]!r}", EXIT_BAD_REPLY) from None
        failure = s3_object_or_none(s3, failure_uri)
        if failure is not None:
            raise CliError(f"the endpoint reported a failure ({failure_uri}): "
                           f"{describe_error('error', failure)}", EXIT_SERVICE_ERROR)
        elapsed = time.monotonic() - started
        if elapsed >= deadline_s:
            raise CliError(f"no result after {elapsed:.0f}s; it may still arrive at {output_uri} "
                           f"(failure: {failure_uri})", EXIT_TIMEOUT)
        print(f"waiting for {endpoint}: {elapsed:.0f}s elapsed (from zero instances a cold start takes "
              f"several minutes; deadline {deadline_s:.0f}s)", file=sys.stderr, flush=True)
        time.sleep(min(delay, max(0.0, deadline_s - elapsed)))
        delay = min(delay * 1.6, 15.0)


def cmd_async(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint, bucket, prefix, region = resolve_async_target(args)
    inference_id = args.inference_id or uuid.uuid4().hex
    key = f"{prefix}{inference_id}.json"
    session = boto3.session.Session(region_name=region)
    s3 = session.client("s3")
    runtime = session.client("sagemaker-runtime")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(request_body(args)).encode(),
                      ContentType="application/json")
        response = runtime.invoke_endpoint_async(
            EndpointName=endpoint, InputLocation=f"s3://{bucket}/{key}", ContentType="application/json",
            Accept="application/json", InferenceId=inference_id,
            InvocationTimeoutSeconds=args.invocation_timeout, RequestTTLSeconds=args.request_ttl,
        )
        output_uri, failure_uri = response["OutputLocation"], response.get("FailureLocation", "")
        print(f"queued {inference_id}: output {output_uri}, failure {failure_uri}", file=sys.stderr)
        if args.no_wait:
            print(json.dumps({"inference_id": inference_id, "input": f"s3://{bucket}/{key}",
                              "output": output_uri, "failure": failure_uri}))
            return EXIT_OK
        reply = wait_for_result(s3, output_uri, failure_uri, args.deadline, endpoint)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"AWS call failed: {exc}", EXIT_SERVICE_ERROR) from None
    if "image" not in reply and "images" not in reply:
        raise CliError(describe_error(reply.get("code", "error"), json.dumps(reply)), EXIT_SERVICE_ERROR)
    paths = write_images(reply, args.out)
    print(f"wrote {', '.join(map(str, paths))} (seed {reply.get('seed')})")
    return EXIT_OK


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("--seed", type=int, help="0..2^32-1; random (and reported) when absent")
    parser.add_argument("--steps", dest="num_inference_steps", type=int, help="1..4 (server default 1)")
    parser.add_argument("--guidance-scale", type=float, help="0..10 (server default 0.0)")
    parser.add_argument("--width", type=int, help="multiple of 8, 256..1024 (server default 512)")
    parser.add_argument("--height", type=int, help="multiple of 8, 256..1024 (server default 512)")
    parser.add_argument("--num-images", type=int, help="1..4 (server default 1)")
    parser.add_argument("--format", dest="output_format", choices=("png", "jpeg", "webp"), help="default png")
    parser.add_argument("--image", type=Path, metavar="FILE",
                        help="image-to-image: start from this PNG/JPEG/WebP (size defaults to the image's)")
    parser.add_argument("--strength", type=float, help="with --image: 0 < S <= 1 (server default 0.5, 2 steps)")
    parser.add_argument("--out", type=Path, default=Path("image.png"), help="where to write (default image.png)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="POST to a running TorchServe")
    add_request_arguments(local)
    local.add_argument("--url", default="http://127.0.0.1:8080", help="inference API (default: %(default)s)")
    local.add_argument("--path", default="/predictions/sdturbo", choices=("/predictions/sdturbo", "/invocations"),
                       help="which route (default: %(default)s)")
    local.add_argument("--timeout", type=float, default=300, help="seconds to wait (default: %(default)s)")
    local.set_defaults(run=cmd_local)

    remote = commands.add_parser("async", help="call the SageMaker async endpoint through S3")
    add_request_arguments(remote)
    remote.add_argument("--from-terraform", type=Path, metavar="PATH",
                        help="infra/ (runs terraform output) or a saved `terraform output -json` file")
    remote.add_argument("--endpoint", help="endpoint name (default: from --from-terraform)")
    remote.add_argument("--bucket", help="async bucket (default: from --from-terraform)")
    remote.add_argument("--input-prefix", help="key prefix for requests (default: async-input/)")
    remote.add_argument("--region", help="AWS region (default: from --from-terraform or the AWS config)")
    remote.add_argument("--inference-id", help="id for this request (default: random)")
    remote.add_argument("--deadline", type=float, default=1200,
                        help="seconds to wait for the result; covers a cold start from zero (default: %(default)s)")
    remote.add_argument("--invocation-timeout", type=int, default=900,
                        help="seconds the endpoint may spend on the request (default: %(default)s)")
    remote.add_argument("--request-ttl", type=int, default=21600,
                        help="seconds the request may wait in the queue (default: %(default)s)")
    remote.add_argument("--no-wait", action="store_true", help="print the output/failure locations and exit")
    remote.set_defaults(run=cmd_async)

    decode = commands.add_parser("decode", help="write the images of a saved JSON reply")
    decode.add_argument("reply", type=Path, help="JSON reply file")
    decode.add_argument("--out", type=Path, default=Path("image.png"), help="where to write (default image.png)")
    decode.set_defaults(run=cmd_decode)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
