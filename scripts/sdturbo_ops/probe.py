"""The engine's GPU pieces timed alone (scripts/gpu_probe.py): what the benchmark's stage times cannot say.

- ``decoder``: the full VAE decoder on one batch of latents, for each variant (upsampling "nearest" or
  "subpixel", torch.compile mode or eager, the VAE slice size), timed with device events; each variant's
  pixels are compared with the first variant's (the same latents), so a faster variant is shown to draw
  the same images.
- ``engine``: the shipped engine's generate and decode stages at one batch size under torch's profiler:
  wall time against the device's busy time (the sum of its kernels), so the host's share is visible, and
  the kernels that take the most device time.
- ``parity``: the engine's served images against plain diffusers' for the same prompts and seeds.

Each result is appended to a JSON lines file as soon as it exists, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("sdturbo_ops.probe").info


def timed_ms(function: Callable[[], object], iterations: int, device) -> list[float]:
    """Milliseconds of each of ``iterations`` calls (device events on CUDA, the host clock elsewhere)."""
    import torch

    times = []
    for _ in range(iterations):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            function()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            function()
            times.append((time.perf_counter() - started) * 1000)
    return times


def load_vae(model_dir: Path, device, dtype, upsample: str):
    """The model's VAE as the engine prepares it (channels_last on CUDA, the upsampling asked for)."""
    import torch
    from diffusers import AutoencoderKL

    from handler.pipeline import weights_variant
    from handler.upsample import fold_decoder_upsamplers

    vae = AutoencoderKL.from_pretrained(str(model_dir / "vae"), dtype=dtype, variant=weights_variant(model_dir),
                                        use_safetensors=True, local_files_only=True).to(device).eval()
    if upsample == "subpixel":  # asked for by name: the engine's "auto" is its own choice
        fold_decoder_upsamplers(vae.decoder)
    if device.type == "cuda":
        vae.to(memory_format=torch.channels_last)
    return vae


def probe_decoder(model_dir: Path, out: Path, variants: list[tuple[str, str, int]], batch: int, side: int,
                  iterations: int, device, dtype) -> list[dict]:
    """Time decoding ``batch`` latents of a ``side`` x ``side`` image in slices, per (upsample, compile
    mode, slice) variant; pixels compared with the first variant's."""
    import torch

    from handler.vae import to_uint8_hwc

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, side // 8, side // 8, generator=generator).to(device, dtype)
    if device.type == "cuda":
        latents = latents.contiguous(memory_format=torch.channels_last)
    reference, rows, vaes = None, [], {}
    for upsample, mode, slice_size in variants:
        key = (upsample, mode)
        if key not in vaes:
            vae = load_vae(model_dir, device, dtype, upsample)
            if mode != "eager":
                vae.decoder = torch.compile(vae.decoder, mode=mode)
            vaes[key] = vae
        vae = vaes[key]

        @torch.inference_mode()
        def decode(vae=vae, slice_size=slice_size):
            return torch.cat([to_uint8_hwc(vae.decode(chunk / vae.config.scaling_factor, return_dict=False)[0])
                              for chunk in latents.split(slice_size)])

        started = time.perf_counter()
        pixels = decode()
        if device.type == "cuda":
            torch.cuda.synchronize()
        first_s = time.perf_counter() - started
        times = timed_ms(decode, iterations, device)
        pixels = pixels.cpu()
        reference = pixels if reference is None else reference
        difference = (pixels.int() - reference.int()).abs()
        row = {"probe": "decoder", "upsample": upsample, "compile": mode, "slice": slice_size, "batch": batch,
               "side": side, "first_call_s": round(first_s, 2), "median_ms": round(statistics.median(times), 2),
               "ms_per_image": round(statistics.median(times) / batch, 3),
               "max_level_difference": int(difference.max()),
               "mean_level_difference": round(float(difference.float().mean()), 4)}
        log(f"decoder {upsample} {mode} slice {slice_size}: {row['median_ms']} ms for {batch} "
            f"({row['ms_per_image']} ms an image; first call {row['first_call_s']} s; "
            f"max difference {row['max_level_difference']} levels)")
        _append(out, row)
        rows.append(row)
    return rows


def probe_engine(engine, out: Path, batch: int, top: int = 12) -> dict:
    """The engine's generate and decode at ``batch`` under torch's profiler: wall against device-busy
    milliseconds, and the ``top`` kernels by device time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from handler.schema import GenerationRequest

    def synchronize() -> None:
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)

    requests = [GenerationRequest(prompt=f"probe prompt {index}", seed=index) for index in range(batch)]
    engine.serve_batch(requests)  # shapes seen, allocator warm
    synchronize()
    row: dict = {"probe": "engine", "batch": batch}
    for stage in ("generate", "decode"):
        jobs = engine.admit(requests)
        if stage == "decode":
            engine.generate(jobs)
            synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device.type == "cuda" else [])
        with profile(activities=activities) as profiler:
            started = time.perf_counter()
            # decode without overlap: images are handed over unencoded, so only the decode is measured
            engine.generate(jobs) if stage == "generate" else engine.decode(jobs, overlap=False)
            synchronize()
            wall_ms = (time.perf_counter() - started) * 1000
        kernels = [event for event in profiler.key_averages() if event.device_type.name == "CUDA"]
        busy_ms = sum(event.self_device_time_total for event in kernels) / 1000
        row[stage] = {"wall_ms": round(wall_ms, 2), "device_busy_ms": round(busy_ms, 2),
                      "top_kernels": [{"name": event.key[:90], "ms": round(event.self_device_time_total / 1000, 2),
                                       "calls": event.count}
                                      for event in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]]}
        log(f"engine {stage} at batch {batch}: {wall_ms:.1f} ms wall, {busy_ms:.1f} ms of device work")
    _append(out, row)
    return row


def probe_parity(engine, model_dir: Path, out: Path, seeds: int) -> dict:
    """The engine's served images (its settings, kernels and graphs, PNG) against plain diffusers (the
    pipeline as ``from_pretrained`` makes it, fp16, ``output_type="np"`` rounded as numpy_to_pil rounds)
    for the same prompts and seeds, one request at a time: the largest difference in levels of 255."""
    import base64
    import io

    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    from handler.pipeline import weights_variant
    from handler.schema import GenerationRequest

    plain = DiffusionPipeline.from_pretrained(str(model_dir), dtype=engine.dtype, variant=weights_variant(model_dir),
                                              use_safetensors=True, local_files_only=True).to(engine.device)
    plain.set_progress_bar_config(disable=True)
    differences = []
    for seed in range(seeds):
        prompt = f"parity prompt {seed}"
        reply = engine.serve_batch([GenerationRequest(prompt=prompt, seed=seed)])[0]
        served = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply.body["image"]))).convert("RGB"))
        with torch.inference_mode():
            pixels = plain(prompt, num_inference_steps=1, guidance_scale=0.0, output_type="np",
                           generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        reference = (pixels * 255).round().astype(np.uint8)
        differences.append(int(np.abs(served.astype(int) - reference.astype(int)).max()))
    row = {"probe": "parity", "seeds": seeds, "max_level_difference": max(differences),
           "per_seed": differences}
    log(f"parity with plain diffusers over {seeds} seeds: at most {max(differences)} levels ({differences})")
    _append(out, row)
    del plain
    return row


def _append(out: Path, row: dict) -> None:
    with out.open("a") as stream:
        stream.write(json.dumps(row) + "\n")


def parse_variants(text: str) -> list[tuple[str, str, int]]:
    """``subpixel:default:4,nearest:eager:16`` as (upsample, compile mode or eager, slice) triples."""
    variants = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        upsample, mode, slice_size = item.split(":")
        if upsample not in ("nearest", "subpixel"):
            raise ValueError(f"{item}: upsampling is nearest or subpixel")
        if mode not in ("eager", "default", "max-autotune-no-cudagraphs", "max-autotune"):
            raise ValueError(f"{item}: the mode is eager or a torch.compile mode")
        variants.append((upsample, mode, int(slice_size)))
    return variants
