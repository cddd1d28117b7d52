"""Warm-up: real requests through every stage before the first caller, and the device's capacity found.

With CUDA graphs (or compiled kernels), a batch of every graph size runs first at the warm-up resolution
(and one of every VAE encoder slice size), so serving never pays a capture there. A size that does not fit
in device memory (a max_gpu_memory_gib ceiling, a small GPU) limits every graph to the largest size that
fits: larger batches then run in chunks of it. The engine offers the two operations this needs,
``Engine.fits`` and ``Engine.limit_batch``.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from handler.memory import release_device_cache
from handler.schema import GenerationRequest

if TYPE_CHECKING:
    from handler.engine import Engine

logger = logging.getLogger(__name__)

WARMUP_PROMPT = "a photograph of an astronaut riding a horse"


def warm_up(engine: Engine) -> float:
    """Real requests through every stage, text-to-image and image-to-image; returns their seconds.

    Raises:
        RuntimeError: one image at the warm-up size does not fit, or a warm-up request failed.
    """
    size = engine.settings.warmup_size
    started = time.perf_counter()
    request = GenerationRequest(prompt=WARMUP_PROMPT, seed=0, width=size, height=size)
    image_request = GenerationRequest(prompt=WARMUP_PROMPT, seed=0, image=warmup_image(size)).resolved()
    kernels, graphs = engine.kernels, engine.graphs
    compiled = kernels is not None and kernels.active
    if compiled:
        kernels.warming(True)  # the shapes seen now are the only ones the compiled code runs
    try:
        for batch in engine.settings.cuda_graph_batch_sizes if graphs or compiled else ():
            if not engine.fits(request, batch):
                engine.limit_batch(below=batch)
                break
        # Image-to-image adds one graphed call, the VAE encoder, at the VAE slice sizes (the UNet's
        # graphs at this resolution are captured above).
        for batch in graphs.vae_encode.batch_sizes if graphs else ():
            if not engine.fits(image_request, batch):
                engine.limit_batch(below=batch)
                break
        replies = engine.serve_batch([request, image_request])
    finally:
        if compiled:
            kernels.warming(False)
    for reply in replies:
        if reply.status != 200:
            raise RuntimeError(f"warm-up generation failed: {reply.body.get('message')}")
    elapsed = time.perf_counter() - started
    captured, replays, eager = graphs.counts() if graphs else (0, 0, 0)
    if captured or compiled:
        # The eager runs before each capture left blocks in the allocator's cache; the graphs keep
        # their own pool, so give those back rather than hold both.
        release_device_cache(engine.device)
    logger.info("warm-up generation (%dx%d) took %.2fs (%d CUDA graphs, %d replays, %d eager graph calls)",
                size, size, elapsed, captured, replays, eager)
    return elapsed


def warmup_image(size: int) -> str:
    """A size x size PNG (colour ramps) as base64: the warm-up's image-to-image input."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    pixels = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 128, np.uint8)],
                      axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
