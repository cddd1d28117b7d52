#!/usr/bin/env python3
"""Ask sdturbo-serve for images, locally or on SageMaker, and write them to files.

  invoke.py local "a cat wearing sunglasses" --seed 42 --out cat.png
      POST to a running TorchServe (/predictions/sdturbo, or --path /invocations).
  invoke.py async "a cat wearing sunglasses" --from-terraform infra/ --out cat.png
      Upload the request to S3, call invoke_endpoint_async, wait for the output (or failure) object.
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
from pathlib import Path

EXIT_OK, EXIT_SERVICE_ERROR, EXIT_USAGE, EXIT_TIMEOUT, EXIT_BAD_REPLY = 0, 1, 2, 3, 4
REQUEST_FIELDS = ("seed", "num_inference_steps", "guidance_scale", "width", "height", "num_images", "output_format")


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


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("--seed", type=int, help="0..2^32-1; random (and reported) when absent")
    parser.add_argument("--steps", dest="num_inference_steps", type=int, help="1..4 (server default 1)")
    parser.add_argument("--guidance-scale", type=float, help="0..10 (server default 0.0)")
    parser.add_argument("--width", type=int, help="multiple of 8, 256..1024 (server default 512)")
    parser.add_argument("--height", type=int, help="multiple of 8, 256..1024 (server default 512)")
    parser.add_argument("--num-images", type=int, help="1..4 (server default 1)")
    parser.add_argument("--format", dest="output_format", choices=("png", "jpeg", "webp"), help="default png")
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
