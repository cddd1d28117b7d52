#!/usr/bin/env python3
"""Soak test: TorchServe with the tiny model under constant load, watching errors and worker memory.

Starts a real TorchServe on loopback with the shipped model-config.yaml, warms it up, then keeps
``--concurrency`` clients busy for ``--duration`` seconds: nine requests in ten are valid (sizes and
image counts vary), one in ten is malformed and must get its 400. Anything else is an error. Worker RSS
(the Python workers' resident memory, from /proc) is read after warm-up and at the end.

  soak.py --duration 600 --concurrency 64 --out bench-results/soak.json

Exit codes: 0 no errors and RSS growth under --max-rss-growth, 1 otherwise, 2 bad usage, 3 no server.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.archive import build
from sdturbo_ops.paths import MODEL_CONFIG, MODEL_NAME, ROOT, TINY_SD
from sdturbo_ops.soak import soak, warm_up, worker_rss
from sdturbo_ops.local_torchserve import LocalTorchServe

EXIT_FAILED, EXIT_NO_SERVER = 1, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=cli.absolute_path, default=TINY_SD,
                        help="diffusers folder (default: the tiny model)")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default: 600)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients (default: 64)")
    parser.add_argument("--warmup", type=float, default=120, help="seconds of the same load before measuring")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent allowed (default: 5)")
    parser.add_argument("--out", type=cli.absolute_path, default=ROOT / "bench-results" / "soak.json")
    args = parser.parse_args(argv)
    if not (args.model_dir / "model_index.json").is_file():
        raise cli.CliError(f"{args.model_dir} is not a model folder; run `make tiny-model`", cli.EXIT_USAGE)

    def report(elapsed: float, counts: dict) -> None:
        rss = sum(worker_rss(server).values())
        print(f"[soak] {elapsed:5.0f}s  requests {counts['requests']}  errors {counts['errors']}  "
              f"worker RSS {rss:.0f} MiB", flush=True)

    with tempfile.TemporaryDirectory(prefix="sdturbo-soak-") as scratch:
        work = Path(scratch)
        build(args.model_dir, work / "store", MODEL_CONFIG)
        server = LocalTorchServe(work / "store", work / "ts", extra_env={"SDTURBO_DEVICE": "cpu"})
        print("[soak] starting TorchServe", flush=True)
        try:
            server.wait_ready(timeout=300)
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            raise cli.CliError(str(exc), EXIT_NO_SERVER) from None
        try:
            url = f"{server.url}/predictions/{MODEL_NAME}"
            print(f"[soak] warming up for {args.warmup:.0f}s", flush=True)
            warm_up(url, args.warmup, args.concurrency)
            rss_start = worker_rss(server)
            counts = soak(url, args.duration, args.concurrency, report)
            rss_end = worker_rss(server)
        finally:
            server.stop()

    start_total, end_total = sum(rss_start.values()), sum(rss_end.values())
    growth = (end_total - start_total) / start_total * 100 if start_total else 0.0
    result = {
        "command": "scripts/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"), "warmup_s": args.warmup, "duration_s": args.duration,
        "concurrency": args.concurrency,
        **counts, "requests_per_s": round(counts["requests"] / args.duration, 2),
        "worker_rss_mib_start": round(start_total, 1), "worker_rss_mib_end": round(end_total, 1),
        "worker_rss_growth_pct": round(growth, 2), "same_workers": sorted(rss_start) == sorted(rss_end),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = counts["errors"] == 0 and growth < args.max_rss_growth and result["same_workers"]
    return 0 if ok else EXIT_FAILED


if __name__ == "__main__":
    cli.run(main)
