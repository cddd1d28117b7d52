"""What the engine's stages run under: error isolation per request, and a timer per stage.

A stage that calls the device once for a group of jobs runs it as attempts::

    for attempt in attempts(groups, "generation", device):
        with attempt:
            generate(attempt.jobs)

Each group is tried whole. Running out of device memory splits it in halves, down to single requests, so
a 507 reaches only a request that does not fit alone; any other error answers 500 to the jobs of the
failed call. Either way the error is answered and the loop goes on with the next attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from handler.jobs import Job
from handler.memory import is_out_of_memory, release_device_cache

logger = logging.getLogger(__name__)

OUT_OF_MEMORY_MESSAGE = "out of device memory for this request alone; retry with fewer or smaller images"


class Attempt:
    """One call of a stage on ``jobs``; as a context manager it answers the error the call raises."""

    def __init__(self, jobs: list[Job], what: str):
        self.jobs = jobs
        self.what = what
        self.out_of_memory = False

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if is_out_of_memory(exc):
            # Retried by ``attempts`` once this block is left, so the failed call's frames (and the tensors
            # they hold) are released first.
            self.out_of_memory = True
            return True
        logger.error("image %s failed for %d request(s)", self.what, len(self.jobs), exc_info=exc)
        for job in self.jobs:
            job.fail(500, "InternalServerError", f"image {self.what} failed; see server logs")
        return True


def attempts(groups: Sequence[Sequence[Job]], what: str, device: torch.device) -> Iterator[Attempt]:
    """An attempt per group's open jobs, then, after each one that ran out of memory, its halves."""
    for group in groups:
        pending = [[job for job in group if job.open]]
        while pending:
            jobs = pending.pop()
            if not jobs:
                continue
            attempt = Attempt(jobs, what)
            yield attempt
            if not attempt.out_of_memory:
                continue
            release_device_cache(device)
            if len(jobs) == 1:
                request = jobs[0].request
                logger.error("out of device memory in %s for one request (%d image(s) at %dx%d)",
                             what, request.num_images, request.width, request.height)
                jobs[0].fail(507, "OutOfMemory", OUT_OF_MEMORY_MESSAGE)
                continue
            logger.warning("out of device memory in %s for %d requests; retrying them in halves", what, len(jobs))
            half = len(jobs) // 2
            pending += [jobs[half:], jobs[:half]]  # the first half next


@contextmanager
def timed(stage_ms: dict[str, float], stage: str, device: torch.device) -> Iterator[None]:
    """Put the block's milliseconds in ``stage_ms[stage]``, the device's queued work included."""
    started = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # CUDA work is asynchronous: charge it to its own stage
    stage_ms[stage] = round((time.perf_counter() - started) * 1000, 2)
