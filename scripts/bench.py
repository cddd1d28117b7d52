#!/usr/bin/env python3
"""Benchmark sdturbo-serve in one run: the engine's ceiling, TorchServe, and the seed's FastAPI baseline.

1. engine:   the handler's own Engine (generate + encode, no HTTP) at several batch sizes: the ceiling
             (in a child process, so its GPU memory is gone before the served stages), plus the
             encoders on a natural photograph; then the same for image-to-image (a 512x512 input,
             the model card's 2 steps at strength 0.5).
2. startup:  TorchServe launch -> worker READY (load + warm-up) for each archive format, split into
             phases with the timestamps the handler logs.
3. served:   TorchServe with the archive, swept over concurrency levels: img/s, p50/p90/p99, errors,
             GPU memory; and one image-to-image row at the highest level (the input image travels
             base64 in every request).
4. baseline: scripts/baseline_server.py (FastAPI + diffusers, one request at a time), same sweep.

Writes ``OUT/bench.json`` and ``OUT/bench.png``. On a CPU with the tiny model it is a smoke test; on a
GPU with ``build_offline_model.py --size full`` it is the performance benchmark (docs/PERFORMANCE.md).

  bench.py --model-dir build/models/sd-turbo-tiny --concurrency 1,8,32 --requests 64

Exit codes: 0 done with no failed request, 1 some requests failed, 2 bad arguments, 3 a server did not start.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.bench import (
    Sweep, bench_baseline, bench_engine_and_encoder, bench_memory_cap, bench_torchserve, configure_logging,
    in_child_process, log, memory_proof_failed, plot,
)
from sdturbo_ops.load import device_name
from sdturbo_ops.paths import MODEL_CONFIG, ROOT, TINY_SD
from sdturbo_ops.torchserve_config import endpoint_sizing, model_config, profiles

EXIT_ERRORS, EXIT_NO_SERVER = 1, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--model-dir", type=cli.absolute_path, default=TINY_SD,
                        help="diffusers folder to serve (default: the tiny offline model)")
    parser.add_argument("--out", type=cli.absolute_path, default=ROOT / "bench-results", help="where bench.json/png go")
    parser.add_argument("--concurrency", type=ints, default=[1, 8, 32], help="levels (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default 64)")
    parser.add_argument("--baseline-requests", type=int,
                        help="requests per level for the slow FastAPI baseline (default: --requests)")
    parser.add_argument("--engine-batches", type=ints, default=[1, 8], help="engine batch sizes (default 1,8)")
    parser.add_argument("--engine-iterations", type=int, default=5, help="timed calls per batch size")
    parser.add_argument("--formats", type=lambda t: t.split(","), default=["no-archive", "zip-store"],
                        help="archive formats to time start->READY; the first is swept")
    parser.add_argument("--batch-size", type=int, help="override model-config batchSize")
    parser.add_argument("--max-batch-delay", type=int, help="override model-config maxBatchDelay (ms)")
    parser.add_argument("--workers", type=int, help="override min/maxWorkers")
    parser.add_argument("--handler-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a handler: setting for every stage (repeatable)")
    parser.add_argument("--image-replies", action="store_true",
                        help="sweep TorchServe again asking for the image itself (Accept: image/png) instead of "
                             "base64 JSON; rows 'torchserve-image', with bytes per reply in both")
    parser.add_argument("--skip", action="append", default=[], choices=("engine", "torchserve", "baseline"))
    parser.add_argument("--memory-cap-gib", type=float,
                        help="also run the memory-cap stage: 2 workers capped at this many GiB, worst request mix")
    parser.add_argument("--memory-profile", choices=sorted(profiles()),
                        help="also run the memory-cap stage as the endpoint runs this model (handler/profiles.yaml: "
                             "its workers, ceiling and settings); the whole GPU must stay 1 GiB under a T4's memory")
    parser.add_argument("--memory-cap-requests", type=int, default=96, help="requests of the memory-cap stage")
    parser.add_argument("--startup-timeout", type=float, default=900)
    parser.add_argument("--request-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    configure_logging()
    if not (args.model_dir / "model_index.json").is_file():
        raise cli.CliError(f"{args.model_dir} is not a diffusers folder (make tiny-model, or build_offline_model.py "
                           "--size full)", cli.EXIT_USAGE)
    try:
        handler_settings = cli.key_values(args.handler_setting)
    except ValueError as exc:
        parser.error(f"--handler-setting: {exc}")

    args.out.mkdir(parents=True, exist_ok=True)
    command = "scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command, "device_name": device_name(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "model_dir": str(args.model_dir), "handler_settings": handler_settings,
              "engine": [], "engine_img2img": [], "startup_s": {}, "served": [], "served_img2img": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="sdturbo-bench-", dir=args.out) as scratch:
        work = Path(scratch)
        sweep = Sweep(args.model_dir, args.out, args.concurrency, args.requests, args.startup_timeout,
                      args.request_timeout, args.image_replies)
        if "engine" not in args.skip:
            log("engine ceiling (generate + encode, no HTTP)")
            result.update(in_child_process(bench_engine_and_encoder, args.model_dir, args.engine_batches,
                                           args.engine_iterations, handler_settings))
        try:
            if "torchserve" not in args.skip:
                (result["startup_s"], result["startup_phases_s"], result["served"],
                 result["served_img2img"]) = bench_torchserve(sweep, work, args.formats, model_config_overrides(args),
                                                              handler_settings)
            if "baseline" not in args.skip:
                log("FastAPI one-at-a-time baseline")
                result["baseline"] = bench_baseline(sweep, work, args.baseline_requests or args.requests)
            if args.memory_cap_gib:
                log(f"memory cap: 2 workers at {args.memory_cap_gib:g} GiB each, worst request mix")
                result["memory_cap"] = bench_memory_cap(sweep, work, args.memory_cap_requests, handler_settings,
                                                        cap_gib=args.memory_cap_gib)
            if args.memory_profile:
                overrides, profile_handler = endpoint_sizing(args.memory_profile)
                workers = overrides.pop("minWorkers", model_config(MODEL_CONFIG).get("minWorkers", 1))
                overrides.pop("maxWorkers", None)
                log(f"memory proof: {args.memory_profile}'s endpoint sizing, {workers} worker(s), "
                    f"{profile_handler}, worst request mix")
                result["memory_profile"] = {"profile": args.memory_profile, **bench_memory_cap(
                    sweep, work, args.memory_cap_requests, {**profile_handler, **handler_settings}, workers=workers,
                    config_overrides=overrides)}
        except (RuntimeError, TimeoutError) as exc:
            (args.out / "bench.json").write_text(json.dumps(result, indent=2))
            raise cli.CliError(str(exc), EXIT_NO_SERVER) from None
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "bench.png")
    log(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    errors = sum(r["errors"] for r in result["served"] + result["served_img2img"] + result["baseline"])
    errors += sum(1 for key in ("memory_cap", "memory_profile") if key in result and memory_proof_failed(result[key]))
    return EXIT_ERRORS if errors else 0


def model_config_overrides(args: argparse.Namespace) -> dict:
    """The model-config.yaml keys the flags change; a flag left out keeps the shipped value."""
    pairs = (("batchSize", args.batch_size), ("maxBatchDelay", args.max_batch_delay), ("minWorkers", args.workers),
             ("maxWorkers", args.workers))
    return {key: value for key, value in pairs if value is not None}


if __name__ == "__main__":
    cli.run(main)
