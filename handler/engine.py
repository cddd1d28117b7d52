"""The framework-free serving engine: a batch of valid requests in, one reply per request out.

A batch is a list of jobs (handler/jobs.py), one per request, that go through these stages in order:

1. admit     each request becomes a job, its seed drawn if the caller sent none;
2. plan      jobs of the same shape (mode, size, steps, guidance, strength) form a group: one pipeline
             call each; text-to-image and image-to-image requests never share one;
3. generate  per group, the pipeline up to latents (text encoder, UNet, scheduler); image-to-image first
             encodes the groups' starting images with the VAE encoder;
4. decode    per group, latents to uint8 pixels on the device (VAE decoder, in slices); each slice is
             copied to the host as soon as the device has it, and its images go to the encoder then,
             so on a GPU the host encodes one slice while the device decodes the next;
5. encode    per image, pixels to PNG/JPEG/WebP on a thread pool (started during decode), then base64;
6. reply     each job still open gets its 200 body.

Each stage answers the jobs it fails and moves on, so an error stays with its request: running out of
device memory in generate or decode splits the group in halves, down to single requests, and only a
request that does not fit alone gets 507; any other error there answers 500 to the jobs of that call; an
encoding error answers 500 to its own job. Requests that do not parse never get here: the caller answers
them (handler/torchserve_handler.py). generate, decode and encode are timed, per batch, under those names;
as encoding overlaps decoding, "encode" is the encoding time left after the last slice was decoded.

TorchServe is only one caller; the benchmark and the FastAPI baseline call the same ``Engine``, so the
served path and the raw ceiling run identical code.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from handler.cuda_graphs import (
    CaptureFunction,
    GraphedBatchFunction,
    GraphedTextEncoder,
    GraphedUNet,
    capture_cuda_graph,
)
from handler.compiled import CompiledKernels, KernelTarget
from handler.device import cap_device_memory, configure_matmul, select_device, select_dtype
from handler.encode import ImageEncoder
from handler.jobs import BatchResult, Job, Reply
from handler.memory import is_out_of_memory, release_device_cache, release_free_memory
from handler.pipeline import apply_speedups, image_to_image_pipeline, load_pipeline, load_tiny_decoder
from handler.schema import MAX_SEED, GenerationRequest
from handler.settings import EngineSettings

logger = logging.getLogger(__name__)

WARMUP_PROMPT = "a photograph of an astronaut riding a horse"
# The stages whose durations are reported per batch (TorchServe metrics <Stage>Time, the benchmark).
TIMED_STAGES = ("generate", "decode", "encode")
# vae_decode_batch counts images of 512x512, whose latents are 64x64.
_LATENT_PIXELS_512 = 64 * 64
OUT_OF_MEMORY_MESSAGE = "out of device memory for this request alone; retry with fewer or smaller images"


class Engine:
    """Generates and encodes images for batches of requests with one diffusers pipeline (text-to-image)
    and its image-to-image sibling made from the same components."""

    def __init__(self, pipe, device: torch.device, dtype: torch.dtype, settings: EngineSettings, decoder=None,
                 capture: CaptureFunction | None = None, kernels: CompiledKernels | None = None):
        """``capture`` replaces CUDA graph capture (tests exercise the graph plumbing on a CPU with it);
        ``kernels`` are the compiled modules ``load`` installed, warmed up by ``warmup``."""
        self.pipe = pipe
        self.kernels = kernels
        self.device = device
        self.dtype = dtype
        self.settings = settings
        self.decoder = decoder if decoder is not None else pipe.vae
        self.encoder = ImageEncoder(settings)
        self.graphs: list[GraphedBatchFunction] = []
        self._decode_chunk = self._decode_to_uint8
        self._encode_chunk = self._encode_to_moments
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if settings.cuda_graphs and (device.type == "cuda" or capture is not None):
            self._install_graphs(capture or capture_cuda_graph)
        # Made after the graphs are installed, so it shares the graphed UNet and text encoder too.
        self.img2img_pipe = image_to_image_pipeline(pipe)

    def _install_graphs(self, capture: CaptureFunction) -> None:
        pipe, sizes = self.pipe, self.settings.cuda_graph_batch_sizes
        pool = torch.cuda.graph_pool_handle() if self.device.type == "cuda" else None
        pipe.unet = GraphedUNet.wrap(pipe.unet, sizes, pool, capture=capture)
        self.graphs.append(pipe.unet.graphed)
        if getattr(pipe, "text_encoder_2", None) is None:  # SDXL asks its encoders for hidden states: eager
            pipe.text_encoder = GraphedTextEncoder.wrap(pipe.text_encoder, sizes, pool, capture=capture)
            self.graphs.append(pipe.text_encoder.graphed)
        slice_size = self.settings.vae_decode_batch
        vae_sizes = sorted({size for size in sizes if size < slice_size} | {slice_size})
        self._decode_chunk = GraphedBatchFunction(
            self._decode_to_uint8, vae_sizes, name="vae_decode", pool=pool, capture=capture
        )
        self.graphs.append(self._decode_chunk)
        # Image-to-image's only call the text-to-image graphs do not cover; it runs in the same slices.
        self._encode_chunk = GraphedBatchFunction(
            self._encode_to_moments, vae_sizes, name="vae_encode", pool=pool, capture=capture
        )
        self.graphs.append(self._encode_chunk)

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
        memory_fraction = cap_device_memory(device, settings.max_gpu_memory_gib)
        configure_matmul(device)
        pipe = load_pipeline(model_dir, device, dtype)
        decoder = pipe.vae
        if settings.decoder == "tiny":
            decoder = load_tiny_decoder(model_dir / settings.tiny_decoder_dir, device, dtype)
        apply_speedups(pipe, settings, device)
        kernels = None
        if settings.compile != "none" and device.type == "cuda":
            kernels = CompiledKernels.apply(pipe, decoder, KernelTarget.current(device, model_dir, settings),
                                            model_dir / settings.compiled_kernels_dir, settings)
        logger.info(
            "loaded %s from %s on %s (%s%s) in %.1fs",
            type(pipe).__name__, model_dir, device, str(dtype).removeprefix("torch."),
            f", capped at {settings.max_gpu_memory_gib:g} GiB = {memory_fraction:.3f} of the GPU"
            if memory_fraction else "", time.perf_counter() - started,
        )
        return cls(pipe, device, dtype, settings, decoder, capture, kernels)

    # ------------------------------------------------------------------ the stages, in order
    def serve(self, requests: Sequence[GenerationRequest]) -> BatchResult:
        """Answer every request with its own reply; see the module docstring for the stages."""
        stage_ms: dict[str, float] = {}
        jobs = self.admit(requests)
        groups = self.plan(jobs)
        with self._timed(stage_ms, "generate"):
            for group in groups:
                self._isolated(group, self.generate, "generation")
        formats = [job.request.output_format for job in _still_open(jobs) for _ in range(job.request.num_images)]
        decode = partial(self.decode, overlap=self.encoder.per_image(formats))
        with self._timed(stage_ms, "decode"):
            for group in groups:
                self._isolated(_still_open(group), decode, "decoding")
        with self._timed(stage_ms, "encode"):
            self.encode(_still_open(jobs))
        self.reply(jobs)
        if self.settings.trim_memory_after_batch:
            release_free_memory()
        return BatchResult(jobs, stage_ms)

    def serve_batch(self, requests: Sequence[GenerationRequest]) -> list[Reply]:
        """``serve`` for callers that only want the replies, in request order."""
        return self.serve(requests).replies

    def admit(self, requests: Sequence[GenerationRequest]) -> list[Job]:
        """Stage 1: a job per request, with the caller's seed or a fresh one (returned in the reply)."""
        jobs = [Job(request, request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1))
                for request in requests]
        if self.settings.log_prompts:
            for index, job in enumerate(jobs):
                logger.debug("request %d: %r", index, job.request.prompt)
        return jobs

    @staticmethod
    def plan(jobs: Sequence[Job]) -> list[list[Job]]:
        """Stage 2: jobs whose requests share ``shape_key()`` go through the pipeline together."""
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[job.request.shape_key()].append(job)
        return list(groups.values())

    @torch.inference_mode()
    def generate(self, jobs: Sequence[Job]) -> None:
        """Stage 3: one pipeline call, to latents, for jobs of one shape: text-to-image, or image-to-image
        from the jobs' starting images (``encode_images``).

        Each request draws its noise from its own CPU ``torch.Generator`` seeded with its seed, so a seed
        reproduces its images whatever else is in the batch (and on any device).
        """
        first = jobs[0].request
        prompts: list[str] = []
        generators: list[torch.Generator] = []
        for job in jobs:
            generator = torch.Generator("cpu").manual_seed(job.seed)
            prompts += [job.request.prompt] * job.request.num_images
            generators += [generator] * job.request.num_images
        common = {"prompt": prompts, "num_inference_steps": first.num_inference_steps,
                  "guidance_scale": first.guidance_scale, "generator": generators, "output_type": "latent"}
        if first.init_image is None:
            latents = self.pipe(**common, height=first.height, width=first.width).images
        else:
            # Latents (4 channels) as the image: the pipeline only adds the noise for ``strength``.
            image_latents = self.encode_images(jobs, generators)
            latents = self.img2img_pipe(**common, image=image_latents, strength=first.strength).images
        for job, part in zip(jobs, latents.split(_image_counts(jobs)), strict=True):
            job.latents = part

    def decode(self, jobs: Sequence[Job], overlap: bool = False) -> None:
        """Stage 4: the jobs' latents to pixels, in one pass of ``decode_images``; each image is handed to
        the encoder as it reaches the host, to be encoded at once when ``overlap`` (ImageEncoder.per_image)
        or when the encode stage claims it. A retry (after out of memory) starts the jobs' images afresh."""
        owners = iter([job for job in jobs for _ in range(job.request.num_images)])
        for job in jobs:
            job.claims = []
        for image in self.decode_images(torch.cat([job.latents for job in jobs])):
            job = next(owners)
            job.claims.append(self.encoder.hand_over(image, job.request.output_format, now=overlap))
        for job in jobs:
            job.latents = None

    def encode(self, jobs: Sequence[Job]) -> None:
        """Stage 5: every image of every job encoded in its format, then base64; a job with an image that
        fails to encode gets a 500 of its own."""
        for job in jobs:
            encoded = [claim() for claim in job.claims]
            job.claims = []
            failure = next((item for item in encoded if isinstance(item, Exception)), None)
            if failure is not None:
                logger.error("encoding an image failed", exc_info=failure)
                job.fail(500, "InternalServerError", "image encoding failed; see server logs")
                continue
            job.images = [base64.b64encode(data).decode("ascii") for data in encoded]

    @staticmethod
    def reply(jobs: Sequence[Job]) -> None:
        """Stage 6: the 200 body of every job no stage has failed."""
        for job in _still_open(jobs):
            request = job.request
            body = {"image": job.images[0], "seed": job.seed, "width": request.width, "height": request.height,
                    "format": request.output_format}
            if request.num_images > 1:
                body["images"] = job.images
            job.reply = Reply(200, body)

    # ------------------------------------------------------------------ error isolation and timing
    def _isolated(self, jobs: list[Job], step: Callable[[list[Job]], None], what: str) -> None:
        """Run ``step`` on ``jobs`` together. Out of device memory splits them in halves, down to single
        requests, so a 507 reaches only a request that does not fit alone; any other error answers 500 to
        the jobs of the failed call."""
        if not jobs:
            return
        try:
            step(jobs)
            return
        except Exception as exc:
            if not is_out_of_memory(exc):
                logger.exception("image %s failed for %d request(s)", what, len(jobs))
                for job in jobs:
                    job.fail(500, "InternalServerError", f"image {what} failed; see server logs")
                return
        # Out of memory. Retried outside the except block, so the failed call's frames (and the tensors
        # they hold) are released first.
        release_device_cache(self.device)
        if len(jobs) == 1:
            request = jobs[0].request
            logger.error("out of device memory in %s for one request (%d image(s) at %dx%d)",
                         what, request.num_images, request.width, request.height)
            jobs[0].fail(507, "OutOfMemory", OUT_OF_MEMORY_MESSAGE)
            return
        logger.warning("out of device memory in %s for %d requests; retrying them in halves", what, len(jobs))
        half = len(jobs) // 2
        self._isolated(jobs[:half], step, what)
        self._isolated(jobs[half:], step, what)

    @contextmanager
    def _timed(self, stage_ms: dict[str, float], stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA work is asynchronous: charge it to its own stage
        stage_ms[stage] = round((time.perf_counter() - started) * 1000, 2)

    # ------------------------------------------------------------------ image-to-image's starting latents
    @torch.inference_mode()
    def encode_images(self, jobs: Sequence[Job], generators: Sequence[torch.Generator]) -> torch.Tensor:
        """The jobs' starting images as scaled latents, one per image to generate: each job's image goes
        through the VAE encoder once (in slices of ``_vae_slice`` images, through a CUDA graph where there
        are graphs), then each of its images draws its own sample of the latent distribution with its
        generator (``generators`` holds one per image, in order).

        Copied from diffusers 0.42's image-to-image ``prepare_latents`` (StableDiffusionImg2ImgPipeline and
        StableDiffusionXLImg2ImgPipeline: ``retrieve_latents`` with each image's generator, then the scaling,
        SDXL's ``latents_mean``/``latents_std`` included), with the encoder run once per job rather than
        once per image; tests/test_engine.py pins it to the pipelines' own output for the same image.
        """
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        pixels = torch.from_numpy(np.stack([job.request.init_image.pixels for job in jobs])).to(self.device)
        slice_size = self._vae_slice(pixels.shape[1] * pixels.shape[2] // 64)  # 8x8 pixels per latent pixel
        moments = torch.cat([self._encode_chunk({"pixels": chunk}) for chunk in pixels.split(slice_size)])
        draws = iter(generators)
        samples = [posterior.sample(next(draws))
                   for job, posterior in zip(jobs, map(DiagonalGaussianDistribution, moments.split(1)), strict=True)
                   for _ in range(job.request.num_images)]
        latents = torch.cat(samples).to(self.dtype)
        config = self.pipe.vae.config
        statistics = _latent_statistics(config, latents)
        if statistics is not None:
            mean, std = statistics
            return (latents - mean) * config.scaling_factor / std
        return latents * config.scaling_factor

    def _encode_to_moments(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """uint8 NHWC pixels to the VAE's latent distribution parameters (mean and log-variance), as
        VaeImageProcessor scales pixels: x / 255 * 2 - 1."""
        vae = self.pipe.vae
        images = (inputs["pixels"].permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0).to(vae.dtype)
        if self.settings.channels_last and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        return vae.encode(images).latent_dist.parameters

    # ------------------------------------------------------------------ decoding
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Latents to uint8 NHWC pixels on the host, all at once (``decode_images``, gathered)."""
        return np.stack(list(self.decode_images(latents)))

    @torch.inference_mode()
    def decode_images(self, latents: torch.Tensor) -> Iterator[np.ndarray]:
        """Latents to uint8 HWC images on the host, in order. Conversion happens on the device, so only
        bytes cross to the host; decoding runs in slices of ``vae_decode_batch`` because the decoder sets
        peak memory. Every slice is queued on the device before this returns (an out-of-memory error
        raises here); the iterator then hands over each image as soon as its slice has reached the host.

        Copied from diffusers 0.42's post-processing (StableDiffusionXLPipeline.__call__'s latent
        un-scaling, VaeImageProcessor.postprocess's denormalisation, numpy_to_pil's rounding) so the
        work stays on the device; tests/test_engine.py pins it to the pipelines' ``output_type="np"``.
        """
        decoder = self.decoder
        config = decoder.config
        latents = latents.to(decoder.dtype)
        statistics = _latent_statistics(config, latents)
        if statistics is not None:
            mean, std = statistics
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        if self.settings.channels_last and self.device.type == "cuda":
            latents = latents.contiguous(memory_format=torch.channels_last)
        slices = latents.split(self._vae_slice(latents.shape[-2] * latents.shape[-1]))
        arrivals = [self._to_host(self._decode_chunk({"latents": chunk})) for chunk in slices]
        return (image for arrived in arrivals for image in arrived())

    def _to_host(self, pixels: torch.Tensor) -> Callable[[], np.ndarray]:
        """Start copying ``pixels`` to the host; the returned call waits for them. On CUDA the copy runs
        on a side stream into pinned memory, so the device goes on with the next slice meanwhile."""
        stream = self._copy_stream
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

    def _vae_slice(self, latent_pixels: int) -> int:
        """Images per VAE call (decoder, or encoder for image-to-image) at this size: ``vae_decode_batch``
        counts 512x512 images, so larger ones make proportionally smaller slices and the peak memory is
        bounded by pixels."""
        return max(1, self.settings.vae_decode_batch * _LATENT_PIXELS_512 // latent_pixels)

    def _decode_to_uint8(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        images = self.decoder.decode(inputs["latents"], return_dict=False)[0]
        images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).contiguous()

    # ------------------------------------------------------------------ start-up
    def _fits(self, request: GenerationRequest, batch: int) -> bool:
        """Generate and decode ``batch`` copies of ``request`` (capturing their graphs); False when the
        device has no room for them (a max_gpu_memory_gib ceiling, a small GPU)."""
        try:
            jobs = self.admit([request] * batch)
            self.generate(jobs)
            self.decode(jobs)
            return True
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        release_device_cache(self.device)
        return False

    def _limit_batch(self, below: int) -> None:
        """Run batches larger than what fits in chunks of the largest size that fits."""
        largest = max((size for size in self.settings.cuda_graph_batch_sizes if size < below), default=0)
        if not largest:
            raise RuntimeError(f"one {self.settings.warmup_size}x{self.settings.warmup_size} image does not fit in "
                               "device memory (see max_gpu_memory_gib)")
        logger.warning("a batch of %d does not fit in device memory: batches run in chunks of at most %d",
                       below, largest)
        for graphed in self.graphs:
            graphed.limit_batch(largest)

    def warmup(self) -> float:
        """Real requests through every stage, text-to-image and image-to-image; returns their seconds.
        With CUDA graphs, one batch of every graph size at the warm-up resolution first (and of every VAE
        encoder slice size), so serving never pays a capture there."""
        size = self.settings.warmup_size
        started = time.perf_counter()
        request = GenerationRequest(prompt=WARMUP_PROMPT, seed=0, width=size, height=size)
        image_request = GenerationRequest(prompt=WARMUP_PROMPT, seed=0, image=_warmup_image(size))
        compiled = self.kernels is not None and self.kernels.active
        if compiled:
            self.kernels.warming(True)  # the shapes seen now are the only ones the compiled code runs
        try:
            for batch in self.settings.cuda_graph_batch_sizes if self.graphs or compiled else ():
                if not self._fits(request, batch):
                    self._limit_batch(below=batch)
                    break
            # Image-to-image adds one graphed call, the VAE encoder, at the VAE slice sizes (the UNet's
            # graphs at this resolution are captured above).
            for batch in self._encode_chunk.batch_sizes if self.graphs else ():
                if not self._fits(image_request, batch):
                    self._limit_batch(below=batch)
                    break
            replies = self.serve_batch([request, image_request])
        finally:
            if compiled:
                self.kernels.warming(False)
        for reply in replies:
            if reply.status != 200:
                raise RuntimeError(f"warm-up generation failed: {reply.body.get('message')}")
        elapsed = time.perf_counter() - started
        graphs = sum(g.graph_count for g in self.graphs)
        if graphs or compiled:
            # The eager runs before each capture left blocks in the allocator's cache; the graphs keep
            # their own pool, so give those back rather than hold both.
            release_device_cache(self.device)
        logger.info("warm-up generation (%dx%d) took %.2fs (%d CUDA graphs)", size, size, elapsed, graphs)
        return elapsed


def _latent_statistics(config, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The VAE's per-channel ``latents_mean``/``latents_std`` (some VAEs carry them; SD's and SDXL's do
    not), shaped to broadcast over ``like``; None without them."""
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is None or std is None:
        return None
    shape = (1, -1, 1, 1)
    return (torch.tensor(mean, device=like.device, dtype=like.dtype).view(shape),
            torch.tensor(std, device=like.device, dtype=like.dtype).view(shape))


def _warmup_image(size: int) -> str:
    """A size x size PNG (colour ramps) as base64: the warm-up's image-to-image input."""
    ramp = np.linspace(0, 255, size).astype(np.uint8)
    pixels = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)), np.full((size, size), 128, np.uint8)],
                      axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _still_open(jobs: Sequence[Job]) -> list[Job]:
    return [job for job in jobs if job.open]


def _image_counts(jobs: Sequence[Job]) -> list[int]:
    return [job.request.num_images for job in jobs]
