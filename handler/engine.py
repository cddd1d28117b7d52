"""The framework-free serving engine: a batch of parsed requests in, one reply per request out.

TorchServe is only one caller (handler/torchserve_handler.py); the benchmark and the FastAPI baseline
call the same ``Engine``, so the served path and the raw ceiling run identical generate/encode code.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handler.cuda_graphs import (
    CaptureFunction,
    GraphedBatchFunction,
    GraphedTextEncoder,
    GraphedUNet,
    capture_cuda_graph,
)
from handler.device import select_device, select_dtype
from handler.encode import ImageEncoder
from handler.memory import release_free_memory
from handler.pipeline import apply_speedups, load_pipeline, load_tiny_decoder, needs_fp32_vae
from handler.schema import MAX_SEED, GenerationRequest, RequestError
from handler.settings import EngineSettings

logger = logging.getLogger(__name__)

WARMUP_PROMPT = "a photograph of an astronaut riding a horse"


@dataclass(frozen=True)
class Reply:
    """What one caller gets back: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    def to_json(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def error_reply(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"code": status, "type": kind, "message": message})


class Engine:
    """Generates and encodes images for batches of requests with one diffusers pipeline."""

    def __init__(self, pipe, device: torch.device, dtype: torch.dtype, settings: EngineSettings, decoder=None,
                 capture: CaptureFunction | None = None):
        """``capture`` replaces CUDA graph capture (tests exercise the graph plumbing on a CPU with it)."""
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.settings = settings
        self.decoder = decoder if decoder is not None else pipe.vae
        self.encoder = ImageEncoder(settings)
        self.graphs: list[GraphedBatchFunction] = []
        self._decode_chunk = self._decode_to_uint8
        if settings.cuda_graphs and (device.type == "cuda" or capture is not None):
            self._install_graphs(capture or capture_cuda_graph)

    def _install_graphs(self, capture: CaptureFunction) -> None:
        pipe, sizes = self.pipe, self.settings.cuda_graph_batch_sizes
        pool = torch.cuda.graph_pool_handle() if self.device.type == "cuda" else None
        pipe.unet = GraphedUNet.wrap(pipe.unet, sizes, pool, capture=capture)
        self.graphs.append(pipe.unet.graphed)
        if getattr(pipe, "text_encoder_2", None) is None:  # SDXL asks its encoders for hidden states: eager
            pipe.text_encoder = GraphedTextEncoder.wrap(pipe.text_encoder, sizes, pool, capture=capture)
            self.graphs.append(pipe.text_encoder.graphed)
        slice_size = self.settings.vae_decode_batch
        decode_sizes = sorted({size for size in sizes if size < slice_size} | {slice_size})
        self._decode_chunk = GraphedBatchFunction(
            self._decode_to_uint8, decode_sizes, name="vae_decode", pool=pool, capture=capture
        )
        self.graphs.append(self._decode_chunk)

    @classmethod
    def load(cls, base_dir: Path, settings: EngineSettings, gpu_id: int | None = None,
             capture: CaptureFunction | None = None) -> Engine:
        """Load the model named by ``settings.model_dir`` (relative to ``base_dir``) on the chosen device.

        Raises:
            ModelLoadError: the weights are missing, unsafe or unreadable.
            DeviceError: the requested device is not available.
        """
        device = select_device(settings.device, gpu_id)
        dtype = select_dtype(device, settings.dtype)
        model_dir = base_dir / settings.model_dir
        started = time.perf_counter()
        pipe = load_pipeline(model_dir, device, dtype)
        if needs_fp32_vae(pipe, dtype):
            pipe.vae.to(torch.float32)
        decoder = None
        if settings.decoder == "tiny":
            decoder = load_tiny_decoder(model_dir / settings.tiny_decoder_dir, device, dtype)
        apply_speedups(pipe, settings, device, cache_root=base_dir)
        logger.info(
            "loaded %s from %s on %s (%s) in %.1fs",
            type(pipe).__name__, model_dir, device, str(dtype).removeprefix("torch."),
            time.perf_counter() - started,
        )
        return cls(pipe, device, dtype, settings, decoder, capture)

    # ----------------------------------------------------------------- serving
    def serve_batch(self, items: Sequence[GenerationRequest | RequestError]) -> list[Reply]:
        """Answer every item: parse errors pass through as their 4xx; valid requests with the same shape
        share one pipeline call; a failure in one group does not touch the others."""
        replies: list[Reply | None] = [None] * len(items)
        seeds: dict[int, int] = {}
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if isinstance(item, RequestError):
                replies[index] = Reply(item.status, item.to_body())
                continue
            seeds[index] = item.seed if item.seed is not None else secrets.randbelow(MAX_SEED + 1)
            groups[item.shape_key()].append(index)
            if self.settings.log_prompts:
                logger.debug("request %d: %r", index, item.prompt)

        pixels: dict[int, np.ndarray] = {}
        for members in groups.values():
            requests = [items[i] for i in members]
            try:
                images = self.generate(requests, [seeds[i] for i in members])
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                logger.error("out of GPU memory generating %d request(s) of shape %s", len(members),
                             requests[0].shape_key())
                for i in members:
                    replies[i] = error_reply(
                        507, "OutOfMemory", "out of GPU memory; retry with fewer or smaller images"
                    )
                continue
            except Exception:
                logger.exception("generation failed for %d request(s)", len(members))
                for i in members:
                    replies[i] = error_reply(500, "InternalServerError", "image generation failed; see server logs")
                continue
            pixels.update(zip(members, images, strict=True))

        try:
            self._encode_into(items, seeds, pixels, replies)
        except Exception:
            logger.exception("image encoding failed")
        del pixels
        if self.settings.trim_memory_after_batch:
            release_free_memory()
        return [
            reply if reply is not None else error_reply(500, "InternalServerError", "image encoding failed")
            for reply in replies
        ]

    def _encode_into(self, items, seeds, pixels: dict[int, np.ndarray], replies: list[Reply | None]) -> None:
        jobs = [(index, image) for index in sorted(pixels) for image in pixels[index]]
        encoded = self.encoder.encode_many([(image, items[index].output_format) for index, image in jobs])
        per_request: dict[int, list[str]] = defaultdict(list)
        for (index, _), data in zip(jobs, encoded, strict=True):
            per_request[index].append(base64.b64encode(data).decode("ascii"))
        for index, images in per_request.items():
            request = items[index]
            body: dict[str, Any] = {
                "image": images[0],
                "seed": seeds[index],
                "width": request.width,
                "height": request.height,
                "format": request.output_format,
            }
            if request.num_images > 1:
                body["images"] = images
            replies[index] = Reply(200, body)

    # -------------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], seeds: Sequence[int]) -> list[np.ndarray]:
        """Run one pipeline call for requests that share ``shape_key()``.

        Each request draws its noise from its own CPU ``torch.Generator`` seeded with its seed, so a seed
        reproduces its images whatever else is in the batch (and on any device).

        Returns:
            Per request, a uint8 array of shape (num_images, height, width, 3).
        """
        first = requests[0]
        prompts: list[str] = []
        generators: list[torch.Generator] = []
        for request, seed in zip(requests, seeds, strict=True):
            generator = torch.Generator("cpu").manual_seed(seed)
            prompts += [request.prompt] * request.num_images
            generators += [generator] * request.num_images
        latents = self.pipe(
            prompt=prompts,
            height=first.height,
            width=first.width,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            generator=generators,
            output_type="latent",
        ).images
        pixels = self.decode(latents)
        split_at = np.cumsum([r.num_images for r in requests])[:-1]
        return np.split(pixels, split_at)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents to uint8 NHWC pixels. Conversion happens on the device, so only bytes cross to the
        host; decoding runs in slices of ``vae_decode_batch`` because the decoder sets peak memory."""
        decoder = self.decoder
        config = decoder.config
        latents = latents.to(decoder.dtype)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, -1, 1, 1)
            mean_t = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(shape)
            std_t = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(shape)
            latents = latents * std_t / config.scaling_factor + mean_t
        else:
            latents = latents / config.scaling_factor
        if self.settings.channels_last and self.device.type == "cuda":
            latents = latents.contiguous(memory_format=torch.channels_last)
        slices = latents.split(self.settings.vae_decode_batch)
        chunks = [self._decode_chunk({"latents": chunk}).cpu() for chunk in slices]
        return torch.cat(chunks).numpy()

    def _decode_to_uint8(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        images = self.decoder.decode(inputs["latents"], return_dict=False)[0]
        images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).contiguous()

    def warmup(self) -> float:
        """Real requests through generate and encode; returns their seconds. With CUDA graphs, one batch of
        every graph size at the warm-up resolution first, so serving never pays a capture there."""
        size = self.settings.warmup_size
        started = time.perf_counter()
        request = GenerationRequest(prompt=WARMUP_PROMPT, seed=0, width=size, height=size)
        for batch in self.settings.cuda_graph_batch_sizes if self.graphs else ():
            self.generate([request] * batch, list(range(batch)))
        reply = self.serve_batch([request])[0]
        if reply.status != 200:
            raise RuntimeError(f"warm-up generation failed: {reply.body.get('message')}")
        elapsed = time.perf_counter() - started
        graphs = sum(g.graph_count for g in self.graphs)
        if graphs and self.device.type == "cuda":
            # The eager runs before each capture left blocks in the allocator's cache; the graphs keep
            # their own pool, so give those back rather than hold both.
            torch.cuda.empty_cache()
        logger.info("warm-up generation (%dx%d) took %.2fs (%d CUDA graphs)", size, size, elapsed, graphs)
        return elapsed
