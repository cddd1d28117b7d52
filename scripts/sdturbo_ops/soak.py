"""The soak test's traffic and measurements (scripts/soak.py runs it): a real TorchServe with the tiny model
under constant load, nine valid requests in ten (sizes and image counts vary), one malformed that must
get its 400, and the Python workers' resident memory read from /proc.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sdturbo_ops.load import post
from sdturbo_ops.local_torchserve import LocalTorchServe


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
    return post(url, payload, timeout=300).status, expected


def warm_up(url: str, seconds: float, concurrency: int) -> None:
    """The same traffic for ``seconds``: every shape and batch mix is seen once, so the allocator's pools
    and the model's caches reach their working size before the first RSS reading."""
    until = time.monotonic() + seconds

    def client(seed: int) -> None:
        local = random.Random(-1 - seed)
        while time.monotonic() < until:
            one_request(url, local)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))


def soak(url: str, seconds: float, concurrency: int, on_tick: Callable[[float, dict], object]) -> dict:
    """Keep ``concurrency`` clients busy for ``seconds``; ``on_tick(elapsed, counts)`` every 10 s.

    Returns the counts: requests, errors (a status other than the expected one), rejected_as_expected,
    and ``unexpected`` ("expected->got": count).
    """
    counts: dict = {"requests": 0, "errors": 0, "rejected_as_expected": 0, "unexpected": {}}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        local = random.Random(seed)
        while time.monotonic() < stop_at:
            status, expected = one_request(url, local)
            with lock:
                counts["requests"] += 1
                if status != expected:
                    counts["errors"] += 1
                    key = f"{expected}->{status}"
                    counts["unexpected"][key] = counts["unexpected"].get(key, 0) + 1
                elif status == 400:
                    counts["rejected_as_expected"] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(client, i) for i in range(concurrency)]
        while not all(f.done() for f in futures):
            time.sleep(10)
            on_tick(time.monotonic() - started, counts)
    return counts
