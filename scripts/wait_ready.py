#!/usr/bin/env python3
"""Wait until a TorchServe started with config.properties has loaded the model and can generate.

TorchServe's management API says READY as soon as the handler's initialize() returns; our handler
returns even when the weights fail to load (so requests fail fast instead of hanging). So after READY
this sends one deliberately invalid request: 400 means the model is serving; 503 ModelLoadFailed means
it never will, and the reason is printed.

Exit codes: 0 ready, 1 the model failed to load, 2 timed out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_torchserve import worker_ready  # noqa: E402

EXIT_READY, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2


def probe(url: str, model: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/predictions/{model}", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="inference API (default: %(default)s)")
    parser.add_argument("--management-url", default="http://127.0.0.1:8081",
                        help="management API (default: %(default)s)")
    parser.add_argument("--model", default="sdturbo", help="model name (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (default: %(default)s)")
    args = parser.parse_args(argv)

    started = time.monotonic()
    deadline = started + args.timeout
    last_report = started
    while not worker_ready(args.management_url, args.model):
        now = time.monotonic()
        if now > deadline:
            print(f"timed out after {args.timeout:.0f}s waiting for {args.model} to load", file=sys.stderr)
            return EXIT_TIMEOUT
        if now - last_report >= 10:
            print(f"waiting for {args.model} to load... {now - started:.0f}s", file=sys.stderr)
            last_report = now
        time.sleep(0.5)
    status, body = probe(args.url, args.model)
    if status == 503 and body.get("type") == "ModelLoadFailed":
        print(f"error: {body.get('message')}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.model} is ready ({time.monotonic() - started:.1f}s)")
    return EXIT_READY


if __name__ == "__main__":
    sys.exit(main())
