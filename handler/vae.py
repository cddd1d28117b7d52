"""The VAE's two jobs for the engine: image-to-image's starting latents, and latents to pixels on the host.

Both run in slices (``vae_decode_batch`` images, counted at 512x512), because the VAE, not the UNet, sets
a batch's peak device memory. Each direction is one batch function over a dict of tensors,
``encode_chunk`` and ``decode_chunk``, so handler/cuda_graphs.py can put a CUDA graph in its place.

Decoding converts to uint8 on the device, so only bytes cross to the host, and streams them: every slice
is queued on the device at once, and on CUDA each slice's pixels are copied into pinned memory on a side
stream, so the host can encode slice k while the device decodes slice k + 1.

An fp16 decoder that can overflow (SDXL's VAE decoding in fp16, as the fp16-fix VAE lets it) is guarded:
each decoded image carries one more byte that says whether any of its values was NaN or infinite, read on
the host when the slice arrives (no extra device synchronisation, and the same inside a CUDA graph). A
slice with such an image is decoded again in fp32 rather than returned black.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from handler.pipeline import ModelLoadError
from handler.settings import EngineSettings

log = logging.getLogger(__name__)

# vae_decode_batch counts images of 512x512, whose latents are 64x64.
_LATENT_PIXELS_512 = 64 * 64


class Vae:
    """Runs ``vae``'s encoder and ``decoder`` (the VAE itself, or the tiny decoder) in slices."""

    def __init__(self, vae, decoder, device: torch.device, dtype: torch.dtype, settings: EngineSettings,
                 guard_overflow: bool = False):
        for model in (vae, decoder):
            # Some VAEs carry per-channel latent statistics (SD's and SDXL's do not); the copied scaling
            # below leaves them out, so such a VAE must not load at all rather than give wrong images.
            if getattr(model.config, "latents_mean", None) is not None:
                raise ModelLoadError(f"{type(model).__name__} has latents_mean/latents_std, which this engine "
                                     "does not apply; serve an SD or SDXL turbo model")
        self.vae = vae
        self.decoder = decoder
        self.device = device
        self.dtype = dtype
        self.settings = settings
        # Whether decode_chunk's rows end in a non-finite flag byte (see the module docstring).
        self.guard_overflow = guard_overflow
        self.fp32_redecodes = 0
        self.encode_chunk: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] = self.encode_to_moments
        self.decode_chunk: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] = self.decode_to_uint8
        # None: each slice is copied to the host with a blocking .cpu() (always so off CUDA).
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def slice_size(self, latent_pixels: int) -> int:
        """Images per VAE call at this size: ``vae_decode_batch`` counts 512x512 images, so larger ones make
        proportionally smaller slices and the peak memory is bounded by pixels."""
        return max(1, self.settings.vae_decode_batch * _LATENT_PIXELS_512 // latent_pixels)

    @torch.inference_mode()
    def image_latents(self, images: Sequence[np.ndarray], counts: Sequence[int],
                      generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Starting images (uint8 HWC, all one size) as scaled latents, ``counts[i]`` of them for image i:
        each image goes through the VAE encoder once (in slices, through a CUDA graph where there are
        graphs), then each latent draws its own sample of the latent distribution with its generator
        (``generators`` holds one per latent, in order).

        Copied from diffusers 0.42's image-to-image ``prepare_latents`` (StableDiffusionImg2ImgPipeline and
        StableDiffusionXLImg2ImgPipeline: ``retrieve_latents`` with each image's generator, then the
        scaling), with the encoder run once per image rather than once per latent;
        tests/handler/test_vae.py pins it to the pipelines' own output for the same image.
        """
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        pixels = torch.from_numpy(np.stack(images)).to(self.device)
        slice_size = self.slice_size(pixels.shape[1] * pixels.shape[2] // 64)  # 8x8 pixels per latent pixel
        moments = torch.cat([self.encode_chunk({"pixels": chunk}) for chunk in pixels.split(slice_size)])
        draws = iter(generators)
        samples = [posterior.sample(next(draws))
                   for count, posterior in zip(counts, map(DiagonalGaussianDistribution, moments.split(1)),
                                               strict=True)
                   for _ in range(count)]
        return torch.cat(samples).to(self.dtype) * self.vae.config.scaling_factor

    def encode_to_moments(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """uint8 NHWC pixels to the VAE's latent distribution parameters (mean and log-variance), as
        VaeImageProcessor scales pixels: x / 255 * 2 - 1."""
        vae = self.vae
        images = (inputs["pixels"].permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0).to(vae.dtype)
        if self.settings.channels_last and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return vae.encode(images).latent_dist.parameters

    @torch.inference_mode()
    def decode_images(self, latents: torch.Tensor) -> Iterator[np.ndarray]:
        """Latents to uint8 HWC images on the host, in order. Every slice is queued on the device before
        this returns (an out-of-memory error raises here); the iterator then hands over each image as
        soon as its slice has reached the host.

        Copied from diffusers 0.42's post-processing (the pipelines' latent un-scaling,
        VaeImageProcessor.postprocess's denormalisation, numpy_to_pil's rounding) so the work stays on the
        device; tests/handler/test_vae.py pins it to the pipelines' ``output_type="np"``.
        """
        latents = latents.to(self.decoder.dtype) / self.decoder.config.scaling_factor
        if self.settings.channels_last and self.device.type == "cuda":
            latents = latents.contiguous(memory_format=torch.channels_last)
        slices = latents.split(self.slice_size(latents.shape[-2] * latents.shape[-1]))
        arrivals = [(chunk, self.to_host(self.decode_chunk({"latents": chunk}))) for chunk in slices]
        return (image for chunk, arrived in arrivals for image in self.finite_images(chunk, arrived()))

    def decode_to_uint8(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        images = self.decoder.decode(inputs["latents"], return_dict=False)[0]
        pixels = to_uint8_hwc(images)
        if not self.guard_overflow:
            return pixels
        overflowed = ~torch.isfinite(images).flatten(1).all(dim=1)
        return torch.cat([pixels.flatten(1), overflowed.to(torch.uint8)[:, None]], dim=1)

    def finite_images(self, latents: torch.Tensor, host: np.ndarray) -> np.ndarray:
        """A decoded slice as uint8 HWC images: as it arrived, or, when the guard flagged an image whose
        decode overflowed, the whole slice decoded again in fp32."""
        if not self.guard_overflow:
            return host
        flags, flat = host[:, -1], host[:, :-1]
        scale = math.isqrt(flat.shape[1] // 3 // (latents.shape[-2] * latents.shape[-1]))
        if not flags.any():
            return flat.reshape(len(host), latents.shape[-2] * scale, latents.shape[-1] * scale, 3)
        self.fp32_redecodes += 1
        log.warning("the fp16 decode of %d of %d images overflowed (NaN/Inf): decoding them again in fp32",
                    int(flags.sum()), len(host))
        return self.decode_in_fp32(latents)

    def decode_in_fp32(self, latents: torch.Tensor) -> np.ndarray:
        """``latents`` decoded by an fp32 copy of the decoder (the decoder itself stays as it is: CUDA graphs
        hold its weights' addresses)."""
        decoder = copy.deepcopy(self.decoder).to(torch.float32)
        images = decoder.decode(latents.to(torch.float32), return_dict=False)[0]
        return to_uint8_hwc(images).cpu().numpy()

    def to_host(self, pixels: torch.Tensor) -> Callable[[], np.ndarray]:
        """Start copying ``pixels`` to the host; the returned call waits for them. On CUDA the copy runs
        on a side stream into pinned memory, so the device goes on with the next slice meanwhile."""
        stream = self.copy_stream
        if stream is None:
            host = pixels.cpu().numpy()
            return lambda: host
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            host = torch.empty(pixels.shape, dtype=pixels.dtype, pin_memory=True)
            host.copy_(pixels, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        pixels.record_stream(stream)  # its memory is not reused before the copy has read it

        def arrived() -> np.ndarray:
            copied.synchronize()  # releases the GIL, so the encoder's threads run meanwhile
            return host.numpy()

        return arrived


def to_uint8_hwc(images: torch.Tensor) -> torch.Tensor:
    """The decoder's NCHW output in [-1, 1] as uint8 NHWC pixels, as VaeImageProcessor.postprocess and
    numpy_to_pil round them."""
    images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous()
