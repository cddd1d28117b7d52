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
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from local_torchserve import LocalTorchServe, free_port, stop_process_group  # noqa: E402

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_NO_SERVER = 0, 1, 2, 3


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class GpuMemorySampler:
    """Peak GPU memory used on the device (all processes), sampled with nvidia-smi; None without a GPU."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak_mib, self._stop = interval, None, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int | None:
        if shutil.which("nvidia-smi") is None:
            return None
        try:
            out = subprocess.run(["nvidia-smi", *_visible_gpu(), "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5).stdout
            return max(int(line) for line in out.split())
        except (subprocess.SubprocessError, ValueError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._sample()
            if value is not None:
                self.peak_mib = max(self.peak_mib or 0, value)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _visible_gpu() -> list[str]:
    """nvidia-smi's selector for the one GPU this run may use (several runs can share a machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [f"--id={visible}"] if visible.isdigit() else []


def post(url: str, payload: dict, timeout: float) -> tuple[int, float, int]:
    """(status, seconds, images) for one request."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
            status = response.status
    except urllib.error.HTTPError as err:
        err.read()
        return err.code, time.perf_counter() - started, 0
    except OSError:
        return 0, time.perf_counter() - started, 0
    images = len(body.get("images") or [body.get("image")]) if status == 200 else 0
    return status, time.perf_counter() - started, images


def sweep(url: str, concurrency_levels: list[int], requests: int, timeout: float, label: str,
          extra: dict | None = None) -> list[dict]:
    """Closed-loop load: ``c`` clients each sending back-to-back requests (prompt, seed and ``extra``)
    until ``requests`` are done."""
    results = []
    for concurrency in concurrency_levels:
        total = max(requests, concurrency * 2)
        counter = iter(range(total))
        lock = threading.Lock()
        records: list[tuple[int, float, int]] = []

        def client(counter=counter, lock=lock, records=records):
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                records.append(post(url, {"prompt": f"benchmark prompt {index}", "seed": index, **(extra or {})},
                                    timeout))

        with GpuMemorySampler() as memory:
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                for _ in range(concurrency):
                    pool.submit(client)
            wall = time.perf_counter() - started
        latencies = [seconds for status, seconds, _ in records if status == 200]
        images = sum(count for _, _, count in records)
        row = {
            "system": label, "concurrency": concurrency, "requests": len(records),
            "errors": sum(1 for status, _, _ in records if status != 200),
            "images_per_s": images / wall if wall else 0.0,
            "p50_ms": _ms(percentile(latencies, 50)), "p90_ms": _ms(percentile(latencies, 90)),
            "p99_ms": _ms(percentile(latencies, 99)), "gpu_peak_mib": memory.peak_mib,
        }
        log(f"{label} c={concurrency}: {row['images_per_s']:.1f} img/s, p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms, errors {row['errors']}")
        results.append(row)
    return results


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def input_image_base64(size: int = 512) -> str:
    """The image-to-image input: a size x size PNG of colour ramps with some texture, as base64."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size)
    texture = np.random.default_rng(0).integers(0, 32, (size, size))
    pixels = np.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :], texture * 4.0], -1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def bench_engine(model_dir: Path, batch_sizes: list[int], iterations: int, settings: dict) -> dict:
    """The ceiling: Engine.serve (generate, decode, encode to base64 PNG) without HTTP or TorchServe, for
    text-to-image and for image-to-image."""
    import torch

    from handler.engine import Engine
    from handler.schema import GenerationRequest
    from handler.settings import load_settings

    import yaml

    from build_archive import DEFAULT_CONFIG

    # The shipped handler: settings as the archive's model-config.yaml has them, so the ceiling and the
    # served stages run the same engine.
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())["handler"]
    engine = Engine.load(model_dir.parent, load_settings({**shipped, **settings, "model_dir": model_dir.name}, {}))
    engine.warmup()
    image = input_image_base64()
    modes = {"text": lambda i: GenerationRequest(prompt=f"benchmark prompt {i}", seed=i),
             "img2img": lambda i: GenerationRequest(prompt=f"benchmark prompt {i}", seed=i, image=image)}
    rows = {mode: time_engine(engine, make, batch_sizes, iterations, mode) for mode, make in modes.items()}
    device = str(engine.device)
    del engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"engine": rows["text"], "engine_img2img": rows["img2img"], "engine_device": device}


def time_engine(engine, make_request, batch_sizes: list[int], iterations: int, mode: str) -> list[dict]:
    """img/s and per-stage times of ``engine.serve`` at each batch size. Requests are built (and images
    decoded) once, before the clock starts: the engine's work only."""
    import torch

    rows = []
    for batch in batch_sizes:
        requests = [make_request(i) for i in range(batch)]
        engine.serve_batch(requests)  # first call at this shape: allocator growth, autotuning
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(engine.device)
        stage_ms: dict[str, list[float]] = {}
        started = time.perf_counter()
        for _ in range(iterations):
            result = engine.serve(requests)
            for stage, ms in result.stage_ms.items():
                stage_ms.setdefault(stage, []).append(ms)
        wall = time.perf_counter() - started
        assert all(r.status == 200 for r in result.replies), result.replies[0].body
        peak = torch.cuda.max_memory_allocated(engine.device) / 2**20 if engine.device.type == "cuda" else None
        row = {"batch": batch, "images_per_s": batch * iterations / wall,
               "batch_ms": round(wall / iterations * 1000, 1), "torch_peak_mib": peak and round(peak),
               # the same per-stage timings TorchServe reports as GenerateTime/DecodeTime/EncodeTime
               "stage_ms": {stage: round(statistics.mean(values), 1) for stage, values in stage_ms.items()}}
        log(f"engine {mode} batch {batch}: {row['images_per_s']:.1f} img/s ({row['batch_ms']} ms a batch; "
            f"stages {row['stage_ms']})")
        rows.append(row)
    return rows


def configure_logging() -> None:
    """The engine's own log lines (load, CUDA graph captures, warm-up time) belong in the benchmark's log."""
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    logging.getLogger("handler").setLevel(logging.INFO)


def bench_engine_and_encoder(model_dir: Path, batch_sizes: list[int], iterations: int, settings: dict) -> dict:
    configure_logging()  # a spawned child starts with logging unconfigured
    return {**bench_engine(model_dir, batch_sizes, iterations, settings),
            "encode_natural_image": bench_natural_encode(settings)}


def in_child_process(function, *args):
    """Run ``function`` in a fresh process: the engine's GPU memory (weights, CUDA graph pools, the CUDA
    context) is gone when it returns, so it cannot inflate the served stages' GPU memory readings."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def bench_natural_encode(settings: dict) -> dict:
    """Encoder cost on a natural photograph (scikit-image's astronaut, 512x512) rather than the noise a
    random-weight model draws: noise barely compresses and makes PNG look several times slower."""
    try:
        from skimage import data
    except ImportError:
        return {"skipped": "scikit-image is not installed"}
    from handler.encode import ImageEncoder
    from handler.settings import load_settings

    image = data.astronaut()
    rows = {}
    pillow, fast = {"png_encoder": "pillow"}, {"png_encoder": "fast"}
    for label, overrides, fmt, parts in (("png_fast", fast, "png", 1),
                                         ("png_fast_parallel", fast, "png", None),
                                         ("png_pillow_level_1", {**pillow, "png_compress_level": 1}, "png", 1),
                                         ("png_pillow_level_6", {**pillow, "png_compress_level": 6}, "png", 1),
                                         ("jpeg_q90", {}, "jpeg", 1), ("webp_q90", {}, "webp", 1)):
        encoder = ImageEncoder(load_settings({**settings, **overrides}, {}))
        times, size = [], 0
        for _ in range(15):
            started = time.perf_counter()
            size = len(encoder.encode_one(image, fmt, parts or encoder.threads))
            times.append(time.perf_counter() - started)
        encoder.close()
        rows[label] = {"median_ms": round(statistics.median(times) * 1000, 1), "bytes": size}
    log(f"natural-image encode: {rows}")
    return rows


def bench_torchserve(args, work: Path, handler_overrides: dict) -> tuple[dict, dict, list[dict], list[dict]]:
    """Start-to-READY for every archive format, then the sweep (and the image-to-image row) on the first
    format."""
    from build_archive import DEFAULT_CONFIG, archive_path, build, write_config

    overrides = {k: v for k, v in (("batchSize", args.batch_size), ("maxBatchDelay", args.max_batch_delay),
                                   ("minWorkers", args.workers), ("maxWorkers", args.workers)) if v is not None}
    config = write_config(DEFAULT_CONFIG, work / "model-config.yaml", overrides, handler_overrides)
    startup, phases, served, served_img2img = {}, {}, [], []
    for index, fmt in enumerate(args.formats):
        store = work / f"store-{fmt}"
        log(f"building the {fmt} archive")
        build(args.model_dir, store, "sdturbo", fmt, config, "1.0")
        models = f"sdturbo={archive_path(store, 'sdturbo', fmt).name}"
        server = LocalTorchServe(store, work / f"ts-{fmt}", models=models)
        try:
            seconds = server.wait_ready(timeout=args.startup_timeout)
            startup[fmt] = round(seconds, 2)
            phases[fmt] = startup_phases(server, seconds)
            log(f"TorchServe ({fmt}) launch -> READY: {seconds:.1f}s; phases {phases[fmt]}")
            if index == 0:
                url = f"{server.url}/predictions/sdturbo"
                served = sweep(url, args.concurrency, args.requests, args.request_timeout, "torchserve")
                served_img2img = sweep(url, args.concurrency[-1:], args.requests, args.request_timeout,
                                       "torchserve-img2img", {"image": input_image_base64()})
        except (RuntimeError, TimeoutError) as exc:
            log(f"TorchServe ({fmt}) failed: {exc}")
            print(server.log_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.stop()
            keep_server_log(server, args.out / f"torchserve-{fmt}.log")
        shutil.rmtree(store, ignore_errors=True)
    return startup, phases, served, served_img2img


def bench_memory_cap(args, work: Path, handler_overrides: dict) -> dict:
    """Two workers, each capped at ``--memory-cap-gib``, under the worst request mix the schema allows
    (batches of 8; 1 to 4 images; 512 and 1024 sides mixed): no worker may die, and a request may get 507
    only if it cannot fit alone, which is checked by sending each 507'd request again on its own."""
    from build_archive import DEFAULT_CONFIG, build, write_config

    config = write_config(DEFAULT_CONFIG, work / "model-config-capped.yaml",
                          {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 50},
                          {**handler_overrides, "max_gpu_memory_gib": args.memory_cap_gib})
    store = work / "store-capped"
    build(args.model_dir, store, "sdturbo", "no-archive", config, "1.0")
    server = LocalTorchServe(store, work / "ts-capped")
    url = f"{server.url}/predictions/sdturbo"
    sides, images = (512, 1024), (1, 2, 3, 4)
    payloads = [{"prompt": f"memory cap prompt {i}", "seed": i, "width": sides[i % 2], "height": sides[i // 2 % 2],
                 "num_images": images[i // 4 % 4]} for i in range(args.memory_cap_requests)]
    try:
        server.wait_ready(timeout=args.startup_timeout)
        pids_before = sorted(w.get("pid") for w in server.workers())
        with GpuMemorySampler() as memory, ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda p: post(url, p, args.request_timeout)[0], payloads))
        pids_after = sorted(w.get("pid") for w in server.workers())
        refused = [p for p, status in zip(payloads, statuses, strict=True) if status == 507]
        refused_alone = [post(url, p, args.request_timeout)[0] for p in refused]
    finally:
        server.stop()
        keep_server_log(server, args.out / "torchserve-capped.log")
        shutil.rmtree(store, ignore_errors=True)
    row = {"cap_gib_per_worker": args.memory_cap_gib, "workers": 2, "requests": len(payloads),
           "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
           "workers_unchanged": pids_before == pids_after and len(pids_after) == 2,
           "refused_507": [(p["width"], p["height"], p["num_images"]) for p in refused],
           "refused_507_that_fit_alone": sum(1 for status in refused_alone if status != 507),
           "gpu_peak_mib_all_processes": memory.peak_mib}
    log(f"memory cap: {row}")
    return row


def keep_server_log(server: LocalTorchServe, path: Path) -> None:
    """The server's own log beside the results (its work folder is deleted), without per-request lines."""
    lines = [line for line in server.log_text().splitlines() if "ACCESS_LOG" not in line and "[METRICS]" not in line]
    path.write_text("\n".join(lines[-20000:]) + "\n")


def startup_phases(server: LocalTorchServe, ready_s: float) -> dict:
    """Split launch -> READY with the wall-clock stamps the handler logs (the first worker to warm up):
    Java frontend until the worker process exists, Python imports, model load, warm-up, READY report."""
    stamps = [json.loads(m) for m in re.findall(r"startup timings (\{[^}]*\})", server.log_text())]
    stamps = [s for s in stamps if s.get("process_started") and s.get("warm")]
    if not stamps:
        return {}
    first = min(stamps, key=lambda s: s["warm"])
    points = [server.launched_at, first["process_started"], first["initialize"], first["loaded"], first["warm"]]
    names = ("frontend_to_worker_process", "python_imports", "model_load", "warm_up")
    phases = {name: round(b - a, 2) for name, a, b in zip(names, points[:-1], points[1:], strict=True)}
    phases["ready_report"] = round(server.launched_at + ready_s - first["warm"], 2)
    return phases


def bench_baseline(args, work: Path) -> list[dict]:
    port = free_port()
    output = open(work / "baseline.out", "wb")
    process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "baseline_server.py"), "--model-dir",
                                str(args.model_dir), "--port", str(port)], stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + args.startup_timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baseline server did not start; see {work / 'baseline.out'}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        post(f"http://127.0.0.1:{port}/generate", {"prompt": "warm-up"}, args.request_timeout)
        return sweep(f"http://127.0.0.1:{port}/generate", args.concurrency, args.baseline_requests or args.requests,
                     args.request_timeout, "fastapi-baseline")
    finally:
        stop_process_group(process)
        output.close()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for system in ("torchserve", "fastapi-baseline"):
        rows = [r for r in result["served"] + result["baseline"] if r["system"] == system]
        if rows:
            xs = [r["concurrency"] for r in rows]
            left.plot(xs, [r["images_per_s"] for r in rows], marker="o", label=system)
            right.plot(xs, [r["p50_ms"] or 0 for r in rows], marker="o", label=system)
    if result["engine"]:
        ceiling = max(r["images_per_s"] for r in result["engine"])
        left.axhline(ceiling, linestyle="--", color="grey", label="engine ceiling")
    for axis, title in ((left, "throughput (img/s)"), (right, "p50 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrency")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"sdturbo-serve on {result['device_name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--handler-setting wants KEY=VALUE, got {pair!r}")
        settings[key] = value
    return settings


def device_name() -> str:
    """The GPU's name from nvidia-smi (asking torch would put a CUDA context, ~0.5 GiB, in this process and
    into the served stages' GPU memory readings), else the CPU."""
    if shutil.which("nvidia-smi"):
        try:
            names = subprocess.run(["nvidia-smi", *_visible_gpu(), "--query-gpu=name", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=10).stdout.split("\n")
            if names[0].strip():
                return names[0].strip()
        except subprocess.SubprocessError:
            pass
    return f"CPU ({platform.processor() or platform.machine()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--model-dir", type=Path, default=REPO / "build" / "models" / "sd-turbo-tiny",
                        help="diffusers folder to serve (default: the tiny offline model)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="where bench.json/png go")
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
    parser.add_argument("--skip", action="append", default=[], choices=("engine", "torchserve", "baseline"))
    parser.add_argument("--memory-cap-gib", type=float,
                        help="also run the memory-cap stage: 2 workers capped at this many GiB, worst request mix")
    parser.add_argument("--memory-cap-requests", type=int, default=96, help="requests of the memory-cap stage")
    parser.add_argument("--startup-timeout", type=float, default=900)
    parser.add_argument("--request-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    configure_logging()
    if not (args.model_dir / "model_index.json").is_file():
        print(f"error: {args.model_dir} is not a diffusers folder (make tiny-model, or build_offline_model.py "
              "--size full)", file=sys.stderr)
        return EXIT_USAGE
    try:
        handler_settings = parse_settings(args.handler_setting)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))

    args.out.mkdir(parents=True, exist_ok=True)
    command = "scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command, "device_name": device_name(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "model_dir": str(args.model_dir), "handler_settings": handler_settings,
              "engine": [], "engine_img2img": [], "startup_s": {}, "served": [], "served_img2img": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="sdturbo-bench-", dir=args.out) as scratch:
        work = Path(scratch)
        if "engine" not in args.skip:
            log("engine ceiling (generate + encode, no HTTP)")
            result.update(in_child_process(bench_engine_and_encoder, args.model_dir, args.engine_batches,
                                           args.engine_iterations, handler_settings))
        try:
            if "torchserve" not in args.skip:
                (result["startup_s"], result["startup_phases_s"], result["served"],
                 result["served_img2img"]) = bench_torchserve(args, work, handler_settings)
            if "baseline" not in args.skip:
                log("FastAPI one-at-a-time baseline")
                result["baseline"] = bench_baseline(args, work)
            if args.memory_cap_gib:
                log(f"memory cap: 2 workers at {args.memory_cap_gib:g} GiB each, worst request mix")
                result["memory_cap"] = bench_memory_cap(args, work, handler_settings)
        except (RuntimeError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            (args.out / "bench.json").write_text(json.dumps(result, indent=2))
            return EXIT_NO_SERVER
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "bench.png")
    log(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    errors = sum(r["errors"] for r in result["served"] + result["served_img2img"] + result["baseline"])
    cap = result.get("memory_cap")
    if cap and (not cap["workers_unchanged"] or cap["refused_507_that_fit_alone"]
                or set(cap["statuses"]) - {"200", "507"}):
        errors += 1
    return EXIT_ERRORS if errors else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
