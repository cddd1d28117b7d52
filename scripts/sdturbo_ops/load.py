"""Load for a server and what it costs: closed-loop clients, latency percentiles, GPU memory, the device.

Shared by the benchmark and the soak test (sdturbo_ops.bench, sdturbo_ops.soak).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from sdturbo_ops.client import ACCEPT

log = logging.getLogger("sdturbo_ops.load").info

JSON = ACCEPT["json"]


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


class Outcome(NamedTuple):
    """One request's result: its status, how long it took, the images and bytes that came back, and when
    it was sent and its reply read (epoch seconds: the server's logged stamps are on the same clock)."""

    status: int
    seconds: float
    images: int
    reply_bytes: int = 0
    sent_at: float = 0.0
    received_at: float = 0.0


def post(url: str, payload: dict, timeout: float, accept: str = JSON) -> Outcome:
    """One request; ``accept`` asks for JSON (base64 images) or an image type (the image itself)."""
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": JSON, "Accept": accept})
    sent_at, started = time.time(), time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply, status = response.read(), response.status
            is_json = response.headers.get_content_type() == JSON
    except urllib.error.HTTPError as err:
        err.read()
        return Outcome(err.code, time.perf_counter() - started, 0, 0, sent_at, time.time())
    except OSError:
        return Outcome(0, time.perf_counter() - started, 0, 0, sent_at, time.time())
    seconds, received_at = time.perf_counter() - started, time.time()
    if not is_json:
        return Outcome(status, seconds, 1 if status == 200 else 0, len(reply), sent_at, received_at)
    body = json.loads(reply)
    images = len(body.get("images") or [body.get("image")]) if status == 200 else 0
    return Outcome(status, seconds, images, len(reply), sent_at, received_at)


def client_processes(concurrency: int) -> int:
    """How many processes the load's clients run in: one client thread per process up to a quarter of the
    cores (at most 8), so reading replies (JSON parsing, base64 in megabytes a second) is never held up by
    one process's interpreter lock, and the clients leave the server most of the machine."""
    return max(1, min(concurrency, 8, (os.cpu_count() or 1) // 4))


def run_clients(url: str, concurrency: int, total: int, timeout: float, accept: str = JSON,
                extra: dict | None = None) -> list[Outcome]:
    """Closed loop: ``concurrency`` clients, spread over ``client_processes`` processes, each sending
    back-to-back requests (prompt and seed from a shared counter, then ``extra``) until ``total`` are sent."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    processes = client_processes(concurrency)
    threads = [concurrency // processes + (1 if index < concurrency % processes else 0) for index in range(processes)]
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_share_counter, initargs=(counter,)) as pool:
        futures = [pool.submit(_client_process, url, count, total, timeout, accept, extra or {}) for count in threads]
        return [outcome for future in futures for outcome in future.result()]


_counter = None


def _share_counter(counter) -> None:
    global _counter
    _counter = counter


def _next_index(total: int) -> int | None:
    with _counter.get_lock():
        index = _counter.value
        if index >= total:
            return None
        _counter.value = index + 1
        return index


def _client_process(url: str, threads: int, total: int, timeout: float, accept: str, extra: dict) -> list[Outcome]:
    records: list[Outcome] = []

    def client() -> None:
        while (index := _next_index(total)) is not None:
            records.append(post(url, {"prompt": f"benchmark prompt {index}", "seed": index, **extra}, timeout, accept))

    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(client)
    return records


def sweep(url: str, concurrency_levels: list[int], requests: int, timeout: float, label: str,
          extra: dict | None = None, accept: str = JSON) -> list[dict]:
    """Closed-loop load at each concurrency level (``run_clients``): ``requests`` per level (at least two
    per client), replies in the form ``accept`` asks for. Each row keeps its requests' outcomes in
    ``outcomes`` for callers that break latency down (dropped before a row is written)."""
    results = []
    for concurrency in concurrency_levels:
        total = max(requests, concurrency * 2)
        with GpuMemorySampler() as memory:
            started = time.perf_counter()
            records = run_clients(url, concurrency, total, timeout, accept, extra)
            wall = time.perf_counter() - started
        latencies = [record.seconds for record in records if record.status == 200]
        images = sum(record.images for record in records)
        replied = [record.reply_bytes for record in records if record.status == 200]
        row = {
            "system": label, "concurrency": concurrency, "requests": len(records),
            "client_processes": client_processes(concurrency),
            "errors": sum(1 for record in records if record.status != 200),
            "images_per_s": images / wall if wall else 0.0,
            "p50_ms": _ms(percentile(latencies, 50)), "p90_ms": _ms(percentile(latencies, 90)),
            "p99_ms": _ms(percentile(latencies, 99)), "gpu_peak_mib": memory.peak_mib,
            # the bytes on the wire per reply: base64 in JSON is a third larger than the image itself
            "reply_bytes": round(sum(replied) / len(replied)) if replied else None,
        }
        log(f"{label} c={concurrency}: {row['images_per_s']:.1f} img/s, p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms, errors {row['errors']}, {row['reply_bytes']} bytes per reply "
            f"({row['client_processes']} client processes)")
        results.append({**row, "outcomes": records})
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
