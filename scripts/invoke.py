#!/usr/bin/env python3
"""Ask sdturbo-serve for images, locally or on SageMaker, and write them to files.

  invoke.py local "a cat wearing sunglasses" --seed 42 --out cat.png
      POST to a running TorchServe (/predictions/sdturbo, or --path /invocations).
  invoke.py local "the same cat, as a watercolour" --image cat.png --strength 0.5 --out paint.png
      Image-to-image: the file travels inside the request JSON as base64 (in S3 too, with async).
  invoke.py local "a cat" --guidance-scale 2 --negative-prompt "blurry" --out cat.png
      A negative prompt works through classifier-free guidance, so only with --guidance-scale above 1.
  invoke.py async "a cat wearing sunglasses" --from-terraform infra/ --out cat.png
      Check the request with the handler's own schema, upload it to S3, call invoke_endpoint_async, and
      wait for the output (or failure) object. Credentials come from the standard AWS chain.
  invoke.py async "a cat" --from-terraform infra/ --no-wait > queued.json
  invoke.py result "$(jq -r .inference_id queued.json)" --from-terraform infra/ --out cat.png
      Queue now, fetch later: by inference id (or the output's s3:// location), waiting while it runs.
  invoke.py local "a cat wearing sunglasses" --accept image --out cat.png
      Ask for the image itself (Accept: image/png) instead of base64 in JSON: a quarter fewer bytes; the
      seed comes in a header. With async, the output object in S3 is then the image file; `result` and
      `decode` recognise an image output by its bytes and save it as it is.
  invoke.py decode reply.json --out cat.png
      Turn a saved JSON reply (or a saved image output) into image files.
  invoke.py warm --from-terraform infra/
      Start the endpoint ahead of a burst: queue one small request (at zero instances SageMaker starts one)
      and wait until it is answered, printing how long that took. The instance stays until its queue has
      been empty for ~15 minutes; for fixed hours, use the stack's warm_window instead.

With several images (--num-images 3 --out cat.png) the files are cat.png, cat-1.png, cat-2.png. The
file name's ending and the format agree: --out cat.jpg asks for JPEG; --format jpeg --out cat.png is
refused before anything is sent.

Exit codes: 0 images written, 1 the service reported an error, 2 bad usage or configuration (bad
flags, a request the endpoint would refuse, no AWS region or credentials), 3 timed out, 4 the reply
could not be read (or is not a reply of this service).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sdturbo_ops import aws_async, cli, request_docs
from sdturbo_ops.client import (
    ACCEPT, BadReply, BadUsage, ClientError, ServiceError, Timeout, accept_header, output_and_format, post_local,
    read_reply, request_body, seed_of, validate, write_images,
)
from sdturbo_ops.paths import MODEL_NAME

EXIT_CODES = {ServiceError: 1, BadUsage: cli.EXIT_USAGE, Timeout: 3, BadReply: 4}


def report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def wrote(paths: list[Path], note: str, extra: str = "") -> None:
    print(f"wrote {', '.join(map(str, paths))}{extra}" + (f" ({note})" if note else ""))


def prepared(args: argparse.Namespace) -> tuple[dict, str]:
    """The request body and its Accept header, with --out and --format made to agree first."""
    args.out, args.output_format = output_and_format(args.out, args.output_format)
    accept = accept_header(args.accept, args.output_format, args.num_images)
    return request_body(args.prompt, vars(args), args.image), accept


def seed_note(reply: object, asked: int | None) -> str:
    """The seed the reply states, else the one the request sent (an image output in S3 states none)."""
    seed = seed_of(reply)
    seed = asked if seed is None else seed
    return f"seed {seed}" if seed is not None else "seed not in the output: pass --seed to know it"


def cmd_local(args: argparse.Namespace) -> None:
    body, accept = prepared(args)
    started = time.monotonic()
    reply = post_local(args.url.rstrip("/") + args.path, body, args.timeout, accept)
    paths, note = write_images(reply, args.out)
    wrote(paths, note, f" ({seed_note(reply, args.seed)}, {time.monotonic() - started:.2f}s)")


def cmd_decode(args: argparse.Namespace) -> None:
    try:
        payload = args.reply.read_bytes()
    except OSError as exc:
        raise BadReply(f"cannot read {args.reply}: {exc}") from None
    reply = read_reply(payload, str(args.reply))
    paths, note = write_images(reply, args.out or Path("image.png"), str(args.reply))
    wrote(paths, note)


def aws_target(args: argparse.Namespace) -> aws_async.Target:
    return aws_async.resolve_target(args.from_terraform, **{
        name: getattr(args, name, None)
        for name in ("endpoint", "bucket", "input_prefix", "output_uri", "failure_uri", "region")})


def wait_and_write(aws, args: argparse.Namespace, inference_id: str | None, output_uri: str | None,
                   failure_uri: str | None, target: aws_async.Target) -> None:
    reply = aws_async.wait_for_result(aws, target, inference_id, output_uri, failure_uri, args.timeout,
                                      args.sqs_queue, report)
    paths, note = write_images(reply, args.out or Path("image.png"), "the output")
    wrote(paths, note, f" ({seed_note(reply, getattr(args, 'seed', None))})")


def cmd_async(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError as AwsError

    body, accept = prepared(args)
    validate(body)  # before any AWS call: a refused request must not start an instance
    target = aws_target(args)
    aws = aws_async.session(target.region)
    try:
        queued = aws_async.submit(aws, target, body, args.inference_id, args.invocation_timeout, args.request_ttl,
                                  accept)
        report(f"queued {queued.inference_id}: output {queued.output_uri}, failure {queued.failure_uri}")
        if args.no_wait:
            print(queued.as_json())
            return
        wait_and_write(aws, args, queued.inference_id, queued.output_uri, queued.failure_uri, target)
    except (BotoCoreError, AwsError) as exc:
        raise ServiceError(f"AWS call failed: {exc}") from None


def cmd_result(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError as AwsError

    target = aws_target(args)
    if args.request.startswith("s3://"):
        output_uri, inference_id = args.request, Path(args.request).name.split(".", 1)[0]
    elif target.output_uri:
        output_uri, inference_id = None, args.request
    else:
        raise BadUsage(f"to find {args.request} by its inference id, give --from-terraform infra/ (or "
                       "--output-uri), or pass the output's s3:// location instead")
    aws = aws_async.session(target.region)
    try:
        wait_and_write(aws, args, inference_id, output_uri, None, target)
    except (BotoCoreError, AwsError) as exc:
        raise ServiceError(f"AWS call failed: {exc}") from None


def cmd_warm(args: argparse.Namespace) -> None:
    from botocore.exceptions import BotoCoreError, ClientError as AwsError

    target = aws_target(args)
    aws = aws_async.session(target.region)
    try:
        queued, seconds = aws_async.warm(aws, target, args.timeout, args.sqs_queue, report, wait=not args.no_wait)
    except (BotoCoreError, AwsError) as exc:
        raise ServiceError(f"AWS call failed: {exc}") from None
    if seconds is None:
        print(queued.as_json())
        return
    print(f"warm: {target.endpoint} answered {queued.inference_id} after {seconds:.0f}s; an instance stays up until "
          "its queue has been empty for ~15 minutes")


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    """The request's flags; each field's bounds and default in its help come from the schema (handler/schema.py)."""
    field = request_docs.flag_help
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("--seed", type=int, help=field("seed"))
    parser.add_argument("--steps", dest="num_inference_steps", type=int, help=field("num_inference_steps"))
    parser.add_argument("--guidance-scale", type=float, help=field("guidance_scale"))
    parser.add_argument("--negative-prompt", metavar="TEXT",
                        help="what to steer away from; needs --guidance-scale above 1 (twice the UNet work): "
                             + field("negative_prompt"))
    parser.add_argument("--width", type=int, help=field("width"))
    parser.add_argument("--height", type=int, help=field("height"))
    parser.add_argument("--num-images", type=int, help=field("num_images"))
    parser.add_argument("--format", dest="output_format", choices=request_docs.choices("output_format"),
                        help="image format (default: from --out's ending, else the server's: "
                             f"{request_docs.fields()['output_format']['default']})")
    parser.add_argument("--image", type=cli.absolute_path, metavar="FILE",
                        help="image-to-image: start from this PNG/JPEG/WebP (size defaults to the image's)")
    parser.add_argument("--strength", type=float, help="with --image: " + field("strength"))
    parser.add_argument("--no-metadata", dest="metadata", action="store_false", default=None,
                        help="leave the settings that made the image out of the file; " + field("metadata"))
    parser.add_argument("--accept", choices=tuple(ACCEPT), default="json",
                        help="the reply's form: json (base64 images) or image (the file itself, one image); "
                             "default: %(default)s")
    add_out_argument(parser)


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=cli.absolute_path, help="where to write (default: image.png, or image.<format>)")


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-terraform", type=cli.absolute_path, metavar="PATH",
                        help="infra/ (runs terraform output) or a saved `terraform output -json` file")
    parser.add_argument("--region", help="AWS region (default: from --from-terraform or the AWS config)")
    parser.add_argument("--output-uri", help="where SageMaker writes outputs (default: from --from-terraform)")
    parser.add_argument("--failure-uri", help="where SageMaker writes failures (default: from --from-terraform)")
    parser.add_argument("--sqs-queue", metavar="URL",
                        help="wait for the notification on this SQS queue (subscribed to the stack's success and "
                             "error topics) instead of polling S3")
    parser.add_argument("--timeout", "--deadline", dest="timeout", type=float, default=1200,
                        help="seconds to wait for the result; covers a cold start from zero (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="POST to a running TorchServe")
    add_request_arguments(local)
    local.add_argument("--url", default="http://127.0.0.1:8080", help="inference API (default: %(default)s)")
    local.add_argument("--path", default=f"/predictions/{MODEL_NAME}",
                       choices=(f"/predictions/{MODEL_NAME}", "/invocations"), help="which route (default: %(default)s)")
    local.add_argument("--timeout", type=float, default=300, help="seconds to wait (default: %(default)s)")
    local.set_defaults(run=cmd_local)

    remote = commands.add_parser("async", help="call the SageMaker async endpoint through S3")
    add_request_arguments(remote)
    add_aws_arguments(remote)
    remote.add_argument("--endpoint", help="endpoint name (default: from --from-terraform)")
    remote.add_argument("--bucket", help="async bucket (default: from --from-terraform)")
    remote.add_argument("--input-prefix", help=f"key prefix for requests (default: {aws_async.DEFAULT_INPUT_PREFIX})")
    remote.add_argument("--inference-id", help="id for this request (default: random)")
    remote.add_argument("--invocation-timeout", type=int, default=900,
                        help="seconds the endpoint may spend on the request (default: %(default)s)")
    remote.add_argument("--request-ttl", type=int, default=21600,
                        help="seconds the request may wait in the queue (default: %(default)s)")
    remote.add_argument("--no-wait", action="store_true",
                        help="print the inference id and locations as JSON and exit; fetch it later with `result`")
    remote.set_defaults(run=cmd_async)

    result = commands.add_parser("result", help="fetch the result of an earlier request (--no-wait), waiting for it")
    result.add_argument("request", metavar="ID_OR_URI", help="the inference id, or the output's s3:// location")
    add_aws_arguments(result)
    add_out_argument(result)
    result.set_defaults(run=cmd_result)

    warm = commands.add_parser("warm", help="start the endpoint ahead of a burst and wait until it answers")
    add_aws_arguments(warm)
    warm.add_argument("--endpoint", help="endpoint name (default: from --from-terraform)")
    warm.add_argument("--bucket", help="async bucket (default: from --from-terraform)")
    warm.add_argument("--input-prefix", help=f"key prefix for requests (default: {aws_async.DEFAULT_INPUT_PREFIX})")
    warm.add_argument("--no-wait", action="store_true", help="queue the warm-up request and exit at once")
    warm.set_defaults(run=cmd_warm)

    decode = commands.add_parser("decode", help="write the images of a saved JSON reply")
    decode.add_argument("reply", type=cli.absolute_path, help="JSON reply file")
    add_out_argument(decode)
    decode.set_defaults(run=cmd_decode)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ClientError as exc:
        raise cli.CliError(str(exc), EXIT_CODES[type(exc)]) from None
    return 0


if __name__ == "__main__":
    cli.run(main)
