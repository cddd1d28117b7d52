#!/usr/bin/env python3
"""The benchmark's baseline server: the seed's FastAPI + diffusers design, one request at a time.

Loads the same diffusers folder the handler serves and answers ``POST /generate`` with
``{"image": base64 PNG}`` (sdturbo_ops/baseline.py). Not for production: it has no validation,
batching or limits.

  baseline_server.py --model-dir build/models/sd-turbo-tiny --port 8090

Exit codes: 0 stopped, 2 bad arguments.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="diffusers folder")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port (default: %(default)s)")
    args = parser.parse_args(argv)
    import uvicorn

    from sdturbo_ops.baseline import build_app

    uvicorn.run(build_app(args.model_dir), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    cli.run(main)
