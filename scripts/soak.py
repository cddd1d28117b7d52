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
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from bench import post  # noqa: E402
from build_archive import build  # noqa: E402
from local_torchserve import LocalTorchServe  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_SERVER = 0, 1, 2, 3


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def worker_rss(server: LocalTorchServe) -> dict[int, float]:
    return {int(w["pid"]): rss_mib(int(w["pid"])) for w in server.workers() if w.get("pid")}


def one_request(url: str, rng: random.Random) -> tuple[int, int]:
    """(status, expected status) for one random request."""
    if rng.random() < 0.1:
        payload, expected = {"prompt": "a cat", "width": rng.choice([100, 2000, "512"])}, 400
    else:
        payload = {"prompt": f"soak {rng.random()}", "seed": rng.randrange(2**32),
                   "width": rng.choice([256, 384, 512]), "height": rng.choice([256, 512]),
                   "num_images": rng.choice([1, 1, 1, 2])}
        expected = 200
    status, _, _ = post(url, payload, timeout=300)
    return status, expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "build" / "models" / "sd-turbo-tiny")
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default: 600)")
    parser.add_argument("--concurrency", type=int, default=64, help="clients (default: 64)")
    parser.add_argument("--warmup", type=float, default=120, help="seconds of the same load before measuring")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent allowed (default: 5)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "soak.json")
    args = parser.parse_args(argv)
    if not (args.model_dir / "model_index.json").is_file():
        print(f"error: {args.model_dir} is not a model folder; run `make tiny-model`", file=sys.stderr)
        return EXIT_USAGE

    with tempfile.TemporaryDirectory(prefix="sdturbo-soak-") as scratch:
        work = Path(scratch)
        build(args.model_dir, work / "store", "sdturbo", "no-archive", REPO / "handler" / "model-config.yaml", "1.0")
        server = LocalTorchServe(work / "store", work / "ts", extra_env={"SDTURBO_DEVICE": "cpu"})
        try:
            server.wait_ready(timeout=300)
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NO_SERVER
        url = f"{server.url}/predictions/sdturbo"
        try:
            # Warm-up with the same traffic: every shape and batch mix is seen once, so the allocator's
            # pools and the model's caches reach their working size before the first RSS reading.
            warm_until = time.monotonic() + args.warmup

            def warm(seed: int) -> None:
                local = random.Random(-1 - seed)
                while time.monotonic() < warm_until:
                    one_request(url, local)

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(warm, range(args.concurrency)))
            rss_start = worker_rss(server)
            counts = {"requests": 0, "errors": 0, "rejected_as_expected": 0}
            unexpected: dict[str, int] = {}
            lock = threading.Lock()
            stop_at = time.monotonic() + args.duration

            def client(seed: int) -> None:
                local = random.Random(seed)
                while time.monotonic() < stop_at:
                    status, expected = one_request(url, local)
                    with lock:
                        counts["requests"] += 1
                        if status != expected:
                            counts["errors"] += 1
                            unexpected[f"{expected}->{status}"] = unexpected.get(f"{expected}->{status}", 0) + 1
                        elif status == 400:
                            counts["rejected_as_expected"] += 1

            started = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                futures = [pool.submit(client, i) for i in range(args.concurrency)]
                while not all(f.done() for f in futures):
                    time.sleep(10)
                    rss = sum(worker_rss(server).values())
                    print(f"[soak] {time.monotonic() - started:5.0f}s  requests {counts['requests']}  "
                          f"errors {counts['errors']}  worker RSS {rss:.0f} MiB", flush=True)
            rss_end = worker_rss(server)
        finally:
            server.stop()

    start_total, end_total = sum(rss_start.values()), sum(rss_end.values())
    growth = (end_total - start_total) / start_total * 100 if start_total else 0.0
    result = {
        "command": "scripts/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"), "warmup_s": args.warmup, "duration_s": args.duration,
        "concurrency": args.concurrency,
        **counts, "unexpected": unexpected, "requests_per_s": round(counts["requests"] / args.duration, 2),
        "worker_rss_mib_start": round(start_total, 1), "worker_rss_mib_end": round(end_total, 1),
        "worker_rss_growth_pct": round(growth, 2), "same_workers": sorted(rss_start) == sorted(rss_end),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = counts["errors"] == 0 and growth < args.max_rss_growth and result["same_workers"]
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
