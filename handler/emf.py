"""The worker's half of the container's CloudWatch metrics: its measurements, handed to the serve entrypoint.

The container writes CloudWatch embedded-metric-format (EMF) records on its standard output, which SageMaker
sends to the endpoint's log group. A worker cannot write them there itself: TorchServe reads a worker's
output and logs each line with a prefix of its own (time, level, worker name), and a record is extracted
only from a log event that is one whole JSON object. So a worker sends each measurement, as one JSON
datagram, to a Unix socket the entrypoint listens on (``$SDSERVE_METRICS_SOCKET``), and the entrypoint,
which owns the container's standard output, writes the records (scripts/sdturbo_ops/emf.py): their
names, units and dimensions have that one home.

A datagram keeps a measurement whole, leaves no file to grow, and is sent without waiting: when the
entrypoint is not there or behind, the measurement is dropped (and counted) rather than stall a batch.
Without ``$SDSERVE_METRICS_SOCKET`` (``make serve``, plain ``torchserve --start``) nothing is sent.

Only numbers go out, the ones the handler's ``startup timings`` and ``batch timings`` lines already
carry, plus status counts, images and the GPU memory peak: never a prompt or any other request text.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

SOCKET_ENV = "SDSERVE_METRICS_SOCKET"  # set by scripts/serve.py for its TorchServe workers


class MetricsChannel:
    """Measurements to the entrypoint's socket; every method is a no-op without one."""

    def __init__(self, path: str | None):
        self.path = path or None
        self.dropped = 0
        self._socket: socket.socket | None = None
        if self.path:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls) -> MetricsChannel:
        return cls(os.environ.get(SOCKET_ENV))

    def startup(self, timings: dict[str, float | None], engine) -> None:
        """One worker start: the epoch stamps of handler.initialize's ``startup timings`` line, whether
        the model loaded (``engine`` is None when it did not), and the GPU memory peak of load and warm-up."""
        numbers = {key: value for key, value in timings.items() if isinstance(value, (int, float))}
        self.send({"event": "startup", "ok": engine is not None, **numbers,
                   "gpu_peak_mib": gpu_peak_mib(getattr(engine, "device", None))})

    def batch(self, timings: dict[str, Any], replies: Iterable, device) -> None:
        """One batch: handle's ``batch timings``, each reply's status class counted, the images sent (a
        200's image files), and the GPU memory peak of the batch on ``device``."""
        classes, images = {"2xx": 0, "4xx": 0, "5xx": 0}, 0
        for reply in replies:
            key = f"{reply.status // 100}xx"
            if key in classes:
                classes[key] += 1
            if reply.status == 200:
                images += len(reply.files)
        numbers = {key: value for key, value in timings.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        self.send({"event": "batch", **numbers, "status": classes, "images": images,
                   "gpu_peak_mib": gpu_peak_mib(device)})

    def send(self, event: dict[str, Any]) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(json.dumps(event).encode(), self.path)
        except OSError as exc:  # no listener (yet, or any more), or its buffer is full: drop, never block
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("metrics to %s dropped (%s); later drops are not logged", self.path, exc)


def gpu_peak_mib(device) -> float | None:
    """The most CUDA memory tensors held on ``device`` since the last call (MiB), and the peak reset; None
    off CUDA. Reads the caching allocator's counters: no synchronisation, no cost on the batch's path."""
    if device is None or getattr(device, "type", None) != "cuda":
        return None
    import torch

    peak = torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return round(peak, 1)
