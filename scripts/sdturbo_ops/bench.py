"""The benchmark's stages (scripts/bench.py runs them): the engine's ceiling, TorchServe's start-up and
served throughput, the FastAPI baseline, the memory cap, and the plot.

Each stage logs one line per measurement through ``logging`` (the CLI shows them with a timestamp).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops.archive import archive_path, build
from sdturbo_ops.breakdown import batch_timings, breakdown, queue_microseconds
from sdturbo_ops.load import JSON, GpuMemorySampler, input_image_base64, post
from sdturbo_ops.load import sweep as load_sweep
from sdturbo_ops.paths import MODEL_CONFIG, MODEL_NAME, ROOT
from sdturbo_ops.processes import free_port, stop_process_group
from sdturbo_ops.local_torchserve import LocalTorchServe
from sdturbo_ops.torchserve_config import write_model_config

log = logging.getLogger("sdturbo_ops.bench").info


@dataclass(frozen=True)
class Sweep:
    """What the served stages share: the model, where logs go, the load they send and their time limits."""

    model_dir: Path
    out: Path
    concurrency: list[int]
    requests: int
    startup_timeout: float
    request_timeout: float
    # The sweep again with Accept: image/png (the image itself, no base64), as rows "torchserve-image".
    image_replies: bool = False


def bench_engine(model_dir: Path, batch_sizes: list[int], iterations: int, settings: dict) -> dict:
    """The ceiling: Engine.serve (generate, decode, encode to base64 PNG) without HTTP or TorchServe, for
    text-to-image and for image-to-image."""
    import torch

    from handler.engine import Engine
    from handler.schema import GenerationRequest
    from handler.settings import load_settings
    from handler.warmup import warm_up

    from sdturbo_ops.torchserve_config import model_config

    # The shipped handler: settings as the archive's model-config.yaml has them, so the ceiling and the
    # served stages run the same engine.
    shipped = model_config(MODEL_CONFIG).get("handler") or {}
    engine = Engine.load(model_dir.parent, load_settings({**shipped, **settings, "model_dir": model_dir.name}, {}))
    warm_up(engine)
    image = input_image_base64()
    modes = {"text": lambda i: GenerationRequest(prompt=f"benchmark prompt {i}", seed=i),
             "img2img": lambda i: GenerationRequest(prompt=f"benchmark prompt {i}", seed=i, image=image).resolved()}
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
    """The benchmark's lines, and the engine's own (load, CUDA graph captures, warm-up time), with the time."""
    logging.basicConfig(level=logging.WARNING, format="[%(name)s %(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        force=True)
    for name in ("handler", "sdturbo_ops"):
        logging.getLogger(name).setLevel(logging.INFO)


def bench_engine_and_encoder(model_dir: Path, batch_sizes: list[int], iterations: int, settings: dict) -> dict:
    configure_logging()  # a spawned child starts with logging unconfigured
    return {**bench_engine(model_dir, batch_sizes, iterations, settings),
            "encode_natural_image": bench_natural_encode(settings),
            "metadata_cost": bench_metadata_cost(model_dir, settings)}


def bench_metadata_cost(model_dir: Path, settings: dict, repeats: int = 2000, encodes: int = 60) -> dict:
    """What writing the settings into an image costs per image (handler/metadata.py), per format: the added
    work alone (the text, then its PNG chunks or EXIF block), timed over ``repeats`` runs, and a 512x512
    image encoded with and without it, alternately, ``encodes`` times each: the fastest of each, as timeit
    advises (slower runs are other processes' doing), whose difference is within the encode's own noise."""
    import numpy as np

    from handler.encode import ImageEncoder
    from handler.metadata import ModelSource, exif, infotext, png_text
    from handler.png import text_chunks
    from handler.parse import parse_request
    from handler.settings import load_settings

    request = parse_request(json.dumps({"prompt": "a lighthouse at dusk, oil painting, dramatic light", "seed": 7,
                                        "guidance_scale": 2.0, "negative_prompt": "blurry, low quality"}).encode())
    source = ModelSource.read(model_dir)
    writers = {"png": lambda text: text_chunks(png_text(text)), "jpeg": exif, "webp": exif}
    pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), np.uint8)
    encoder = ImageEncoder(load_settings(settings, {}))
    rows = {}
    for fmt, write in writers.items():
        started = time.perf_counter()
        for _ in range(repeats):
            write(infotext(request, 7, 0, source, True))
        added_us = (time.perf_counter() - started) / repeats * 1e6
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(encodes):
            for with_text in (False, True):
                started = time.perf_counter()
                encoder.encode_one(pixels, fmt, 1, infotext(request, 7, 0, source, True) if with_text else None)
                times[with_text].append(time.perf_counter() - started)
        plain, tagged = (min(times[key]) * 1000 for key in (False, True))
        rows[fmt] = {"added_work_us": round(added_us, 1), "encode_ms": round(plain, 3),
                     "encode_with_metadata_ms": round(tagged, 3), "difference_ms": round(tagged - plain, 3)}
    encoder.close()
    log(f"metadata cost per image: {rows}")
    return rows


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


def bench_torchserve(sweep: Sweep, work: Path, formats: list[str], overrides: dict,
                     handler_overrides: dict) -> tuple[dict, dict, list[dict], list[dict]]:
    """Start-to-READY for every archive format, then the sweep (and the image-to-image row) on the first
    format. ``overrides`` are model-config.yaml's top-level keys to change (batchSize, minWorkers, ...)."""
    config = write_model_config(MODEL_CONFIG, work / "model-config.yaml", overrides, handler_overrides)
    startup, phases, served, served_img2img = {}, {}, [], []
    for index, fmt in enumerate(formats):
        store = work / f"store-{fmt}"
        log(f"building the {fmt} archive")
        build(sweep.model_dir, store, config, MODEL_NAME, fmt)
        models = f"{MODEL_NAME}={archive_path(store, MODEL_NAME, fmt).name}"
        server = LocalTorchServe(store, work / f"ts-{fmt}", models=models)
        try:
            seconds = server.wait_ready(timeout=sweep.startup_timeout)
            startup[fmt] = round(seconds, 2)
            phases[fmt] = startup_phases(server, seconds)
            log(f"TorchServe ({fmt}) launch -> READY: {seconds:.1f}s; phases {phases[fmt]}")
            if index == 0:
                url = f"{server.url}/predictions/{MODEL_NAME}"
                served = served_sweep(server, sweep, "torchserve", JSON)
                if sweep.image_replies:
                    served += served_sweep(server, sweep, "torchserve-image", "image/png")
                served_img2img = _without_outcomes(load_sweep(url, sweep.concurrency[-1:], sweep.requests,
                                                              sweep.request_timeout, "torchserve-img2img",
                                                              {"image": input_image_base64()}))
        except (RuntimeError, TimeoutError) as exc:
            log(f"TorchServe ({fmt}) failed: {exc}; the end of its log:\n{server.log_text()[-3000:]}")
            raise
        finally:
            server.stop()
            keep_server_log(server, sweep.out / f"torchserve-{fmt}.log")
        shutil.rmtree(store, ignore_errors=True)
    return startup, phases, served, served_img2img


def served_sweep(server: LocalTorchServe, sweep: Sweep, label: str, accept: str) -> list[dict]:
    """The sweep over ``sweep.concurrency`` with replies in the form ``accept`` asks for; the c = 1 row
    also gets its latency split along the path (sdturbo_ops/breakdown.py)."""
    url = f"{server.url}/predictions/{MODEL_NAME}"
    rows = []
    for concurrency in sweep.concurrency:
        queued_before = _queue_microseconds(server)
        (row,) = load_sweep(url, [concurrency], sweep.requests, sweep.request_timeout, label, accept=accept)
        if concurrency == 1:
            queued_after = _queue_microseconds(server)
            queue_ms = None
            if queued_after is not None and row["requests"]:
                # TorchServe registers the counter with its first request: absent before means zero
                queue_ms = (queued_after - (queued_before or 0.0)) / 1000 / row["requests"]
            row["breakdown"] = breakdown(row["outcomes"], _logged_timings(server, row["outcomes"]), queue_ms)
            log(f"{label} c=1 breakdown (the p50 request, ms): {row['breakdown'].get('p50_request')}; "
                f"frontend queue incl. batch delay {row['breakdown'].get('frontend_queue_mean_ms')} ms a request")
        rows.append(row)
    return _without_outcomes(rows)


def _logged_timings(server: LocalTorchServe, outcomes: list, timeout: float = 10.0) -> list[dict]:
    """The handler's batch timings lines of the batches these requests made, once all are in the log
    (TorchServe writes its workers' output to the log a moment after the reply has gone)."""
    first_sent = min(outcome.sent_at for outcome in outcomes)
    return _read_log_until(server, lambda text: [entry for entry in batch_timings(text) if entry["received"] >= first_sent],
                           lambda timings: sum(entry["requests"] for entry in timings) >= len(outcomes), timeout)


def _read_log_until(server: LocalTorchServe, read, enough, timeout: float):
    """``read(the server's log)`` once ``enough`` of it holds, or as it is after ``timeout`` seconds: a worker's
    lines reach the log a moment after what they tell has happened (a reply sent, READY reported)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read(server.log_text())
        if enough(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _queue_microseconds(server: LocalTorchServe) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.ports['metrics']}/metrics", timeout=10) as response:
            return queue_microseconds(response.read().decode())
    except OSError:
        return None


def _without_outcomes(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "outcomes"} for row in rows]


# What nvidia-smi reports as a T4's memory (ml.g4dn's GPU), and the headroom a profile must leave below it:
# the proof runs on a larger GPU, whose CUDA context and allocator differ a little from a T4's.
T4_MEMORY_MIB = 15360
HEADROOM_MIB = 1024


def bench_memory_cap(sweep: Sweep, work: Path, requests: int, handler_overrides: dict, *, workers: int = 2,
                     cap_gib: float | None = None, config_overrides: dict | None = None,
                     gpu_memory_mib: int = T4_MEMORY_MIB) -> dict:
    """``workers`` workers (each capped at ``cap_gib``, or at the handler settings' own ceiling) under the
    worst request mix the schema allows (the archive's batchSize; 1 to 4 images; 512 and 1024 sides mixed):
    no worker may die, and a request may get 507 only if it cannot fit alone, which is checked by sending
    each 507'd request again on its own. The whole GPU's peak memory (every process, CUDA contexts
    included) must leave ``HEADROOM_MIB`` below ``gpu_memory_mib``."""
    capped = {**handler_overrides, **({"max_gpu_memory_gib": cap_gib} if cap_gib else {})}
    config = write_model_config(MODEL_CONFIG, work / "model-config-capped.yaml",
                                {**(config_overrides or {}), "minWorkers": workers, "maxWorkers": workers,
                                 "maxBatchDelay": 50},
                                capped)
    store = work / "store-capped"
    build(sweep.model_dir, store, config)
    server = LocalTorchServe(store, work / "ts-capped")
    url = f"{server.url}/predictions/{MODEL_NAME}"
    sides, images = (512, 1024), (1, 2, 3, 4)
    payloads = [{"prompt": f"memory cap prompt {i}", "seed": i, "width": sides[i % 2], "height": sides[i // 2 % 2],
                 "num_images": images[i // 4 % 4]} for i in range(requests)]
    try:
        server.wait_ready(timeout=sweep.startup_timeout)
        pids_before = sorted(w.get("pid") for w in server.workers())
        with GpuMemorySampler() as memory, ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda p: post(url, p, sweep.request_timeout)[0], payloads))
        pids_after = sorted(w.get("pid") for w in server.workers())
        refused = [p for p, status in zip(payloads, statuses, strict=True) if status == 507]
        refused_alone = [post(url, p, sweep.request_timeout)[0] for p in refused]
    finally:
        server.stop()
        keep_server_log(server, sweep.out / "torchserve-capped.log")
        shutil.rmtree(store, ignore_errors=True)
    peak = memory.peak_mib
    row = {"cap_gib_per_worker": capped.get("max_gpu_memory_gib", 0), "workers": workers,
           "handler_settings": capped, "requests": len(payloads),
           "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
           "workers_unchanged": pids_before == pids_after and len(pids_after) == workers,
           "refused_507": [(p["width"], p["height"], p["num_images"]) for p in refused],
           "refused_507_that_fit_alone": sum(1 for status in refused_alone if status != 507),
           "gpu_peak_mib_all_processes": peak, "gpu_memory_mib": gpu_memory_mib,
           "headroom_mib": None if peak is None else gpu_memory_mib - peak,
           "fits_with_headroom": None if peak is None else gpu_memory_mib - peak >= HEADROOM_MIB}
    log(f"memory cap: {row}")
    return row


def memory_proof_failed(row: dict) -> bool:
    """Whether a memory-cap run broke a promise: a worker died, a request that fits alone was refused, an
    answer other than 200 and 507, or (where the GPU's memory was read) less headroom than promised."""
    return (not row["workers_unchanged"] or bool(row["refused_507_that_fit_alone"])
            or bool(set(row["statuses"]) - {"200", "507"}) or row.get("fits_with_headroom") is False)


def keep_server_log(server: LocalTorchServe, path: Path) -> None:
    """The server's own log beside the results (its work folder is deleted), without per-request lines."""
    lines = [line for line in server.log_text().splitlines() if "ACCESS_LOG" not in line and "[METRICS]" not in line]
    path.write_text("\n".join(lines[-20000:]) + "\n")


def _startup_stamps(log_text: str) -> list[dict]:
    """Each worker's ``startup timings`` that got as far as warm."""
    stamps = [json.loads(m) for m in re.findall(r"startup timings (\{[^}]*\})", log_text)]
    return [s for s in stamps if s.get("process_started") and s.get("warm")]


def startup_phases(server: LocalTorchServe, ready_s: float, timeout: float = 10.0) -> dict:
    """Split launch -> READY with the wall-clock stamps the handler logs (the first worker to warm up):
    Java frontend until the worker process exists, Python imports, model load, warm-up, READY report.
    The worker's state file says READY before TorchServe has written its output to the log, so the stamps
    are waited for (read at once, a zip-store start once had none)."""
    stamps = _read_log_until(server, _startup_stamps, bool, timeout)
    if not stamps:
        return {}
    first = min(stamps, key=lambda s: s["warm"])
    points = [server.launched_at, first["process_started"], first["initialize"], first["loaded"], first["warm"]]
    names = ("frontend_to_worker_process", "python_imports", "model_load", "warm_up")
    phases = {name: round(b - a, 2) for name, a, b in zip(names, points[:-1], points[1:], strict=True)}
    phases["ready_report"] = round(server.launched_at + ready_s - first["warm"], 2)
    return phases


def bench_baseline(sweep: Sweep, work: Path, requests: int) -> list[dict]:
    """The FastAPI baseline (scripts/baseline_server.py, one request at a time), swept like the served stage
    with ``requests`` per level."""
    port = free_port()
    output = open(work / "baseline.out", "wb")
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "baseline_server.py"), "--model-dir",
                                str(sweep.model_dir), "--port", str(port)], stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + sweep.startup_timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baseline server did not start; see {work / 'baseline.out'}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        post(f"http://127.0.0.1:{port}/generate", {"prompt": "warm-up"}, sweep.request_timeout)
        return _without_outcomes(load_sweep(f"http://127.0.0.1:{port}/generate", sweep.concurrency, requests,
                                            sweep.request_timeout, "fastapi-baseline"))
    finally:
        stop_process_group(process)
        output.close()


def figure(result: dict):
    """Throughput and p50 latency against concurrency, for TorchServe and the FastAPI baseline, with the
    engine's ceiling; titled with the model and device measured, both y-axes from zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for system in ("torchserve", "torchserve-image", "fastapi-baseline"):
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
        axis.set_ylim(bottom=0)  # a difference read off the plot is then a ratio too
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"sdturbo-serve: {Path(result['model_dir']).name} on {result['device_name']}")
    fig.tight_layout()
    return fig


def plot(result: dict, path: Path) -> None:
    figure(result).savefig(path, dpi=110)
