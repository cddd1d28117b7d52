"""The framework-free serving engine: a batch of valid requests in, one reply per request out.

A batch is a list of jobs (handler/jobs.py), one per request, that go through the six stages that
``Engine.serve`` lists and runs, in order. Each stage answers the jobs it fails and moves on, so an error
stays with its request: running out of device memory in generate or decode splits the group in halves,
down to single requests, and only a request that does not fit alone gets 507; any other error there
answers 500 to the jobs of that call (handler/stages.py); an image that fails to encode answers 500 to its
own job. Requests that do not parse never get here: the caller answers them
(handler/torchserve_handler.py).

Words: "encode" is always pixels to an image file (PNG/JPEG/WebP, handler/encode.py); the VAE's encoder,
which image-to-image runs on its starting images, is named by what it gives, their latents.

The machinery lives beside it: the VAE's slices and the copies to the host in handler/vae.py, CUDA graph
installation in handler/cuda_graphs.py, the warm-up in handler/warmup.py (which probes the device's
capacity through ``fits`` and ``limit_batch``). TorchServe is only one caller; the benchmark and the
FastAPI baseline call the same ``Engine``, so the served path and the raw ceiling run identical code.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from handler.compiled import CompiledKernels, KernelTarget
from handler.cuda_graphs import CaptureFunction, InstalledGraphs, capture_cuda_graph, install_graphs
from handler.device import cap_device_memory, configure_matmul, select_device, select_dtype
from handler.encode import ImageEncoder
from handler.jobs import Base64Text, BatchResult, Job, Reply
from handler.memory import is_out_of_memory, release_device_cache, release_free_memory
from handler.metadata import ModelSource, infotext
from handler.pipeline import (
    apply_speedups, decodes_sdxl_in_fp16, image_to_image_pipeline, load_pipeline, load_tiny_decoder,
)
from handler.schema import MAX_SEED, GenerationRequest
from handler.settings import EngineSettings
from handler.stages import attempts, timed
from handler.vae import Vae

logger = logging.getLogger(__name__)


class Engine:
    """Generates and encodes images for batches of requests with one diffusers pipeline (text-to-image)
    and its image-to-image sibling made from the same components."""

    def __init__(self, pipe, device: torch.device, dtype: torch.dtype, settings: EngineSettings, decoder=None,
                 capture: CaptureFunction | None = None, kernels: CompiledKernels | None = None):
        """``capture`` replaces CUDA graph capture (tests exercise the graph plumbing on a CPU with it);
        ``kernels`` are the compiled modules ``load`` installed, warmed up by handler/warmup.py."""
        self.pipe = pipe
        self.kernels = kernels
        self.device = device
        self.dtype = dtype
        self.settings = settings
        self.vae = Vae(pipe.vae, decoder if decoder is not None else pipe.vae, device, dtype, settings,
                       guard_overflow=(decoder is None or decoder is pipe.vae) and decodes_sdxl_in_fp16(pipe))
        self.image_encoder = ImageEncoder(settings)
        # What the images' metadata names as their model (handler/metadata.py), from the folder it loaded.
        self.source = ModelSource.read(Path(pipe.name_or_path))
        self.graphs: InstalledGraphs | None = None
        if settings.cuda_graphs and (device.type == "cuda" or capture is not None):
            pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
            self.graphs = install_graphs(pipe, self.vae, settings.cuda_graph_batch_sizes, settings.vae_decode_batch,
                                         pool, capture or capture_cuda_graph)
        # Made after the graphs are installed, so it shares the graphed UNet and text encoder too.
        self.img2img_pipe = image_to_image_pipeline(pipe)

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
        pipe = load_pipeline(model_dir, device, dtype, model_dir / settings.fp16_fix_vae_dir)
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
        """Answer every request with its own reply, in six stages over the batch's jobs:

        1. admit     a job per request, its seed drawn if the caller sent none;
        2. plan      jobs of one shape (``GenerationRequest.shape_key``) form a group: one pipeline call
                     each; text-to-image and image-to-image requests never share one;
        3. generate  per group, the pipeline up to latents (text encoder, UNet, scheduler); image-to-image
                     first turns its starting images into latents with the VAE's encoder;
        4. decode    per group, latents to uint8 pixels on the device (VAE decoder, in slices), each image
                     handed to the image encoder as soon as it reaches the host, so on a GPU the host
                     encodes one slice while the device decodes the next;
        5. encode    per image, the PNG/JPEG/WebP file: what decode did not already encode, on a thread pool;
        6. reply     each job still open gets its 200 body, its files in base64.

        Stages 3-6 are timed, per batch, under their names (``BatchResult.stage_ms``); as encoding overlaps
        decoding, "encode" is the encoding time left after the last slice was decoded.
        """
        stage_ms: dict[str, float] = {}
        jobs = self.admit(requests)  # 1
        groups = self.plan(jobs)  # 2
        with timed(stage_ms, "generate", self.device):  # 3
            for attempt in attempts(groups, "generation", self.device):
                with attempt:
                    self.generate(attempt.jobs)
        overlap = self.image_encoder.per_image([job.request.output_format for job in jobs if job.open
                                                for _ in range(job.request.num_images)])
        with timed(stage_ms, "decode", self.device):  # 4
            for attempt in attempts(groups, "decoding", self.device):
                with attempt:
                    self.decode(attempt.jobs, overlap)
        with timed(stage_ms, "encode", self.device):  # 5
            self.encode(jobs)
        with timed(stage_ms, "reply", self.device):  # 6
            self.reply(jobs)
        if self.settings.trim_memory_after_batch:
            release_free_memory()
        return BatchResult(jobs, stage_ms)

    def serve_batch(self, requests: Sequence[GenerationRequest]) -> list[Reply]:
        """``serve`` for callers that only want the replies, in request order."""
        return self.serve(requests).replies

    def admit(self, requests: Sequence[GenerationRequest]) -> list[Job]:
        """A job per request, with the caller's seed or a fresh one (returned in the reply)."""
        jobs = [Job(request, request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1))
                for request in requests]
        if self.settings.log_prompts:
            for index, job in enumerate(jobs):
                logger.debug("request %d: %r%s", index, job.request.prompt, _image_note(job.request))
        return jobs

    @staticmethod
    def plan(jobs: Sequence[Job]) -> list[list[Job]]:
        """Groups of the jobs whose requests share ``shape_key()``: each goes through the pipeline together."""
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[job.request.shape_key()].append(job)
        return list(groups.values())

    @torch.inference_mode()
    def generate(self, jobs: Sequence[Job]) -> None:
        """One pipeline call, to latents, for jobs of one shape: text-to-image, or image-to-image from the
        latents of the jobs' starting images (``Vae.image_latents``).

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
        common = {"prompt": prompts, "generator": generators, "output_type": "latent", **first.pipeline_arguments()}
        if first.negative_prompt is not None:  # then every job of the group has one (shape_key)
            common["negative_prompt"] = [job.request.negative_prompt for job in jobs
                                         for _ in range(job.request.num_images)]
        if first.init_image is None:
            latents = self.pipe(**common).images
        else:
            # Latents (4 channels) as the image: the pipeline only adds the noise for ``strength``.
            image_latents = self.vae.image_latents([job.request.init_image.pixels for job in jobs],
                                                   _image_counts(jobs), generators)
            latents = self.img2img_pipe(**common, image=image_latents).images
        for job, part in zip(jobs, latents.split(_image_counts(jobs)), strict=True):
            job.latents = part

    def decode(self, jobs: Sequence[Job], overlap: bool = False) -> None:
        """The jobs' latents to pixels, in one pass of ``Vae.decode_images``; each image is handed to the
        image encoder as it reaches the host, to be encoded at once when ``overlap``
        (ImageEncoder.per_image) or when ``encode`` claims it. A retry (after out of memory) starts the
        jobs' images afresh."""
        owners = iter([job for job in jobs for _ in range(job.request.num_images)])
        for job in jobs:
            job.claims = []
        for image in self.vae.decode_images(torch.cat([job.latents for job in jobs])):
            job = next(owners)
            job.claims.append(self.image_encoder.hand_over(image, job.request.output_format, now=overlap,
                                                           text=self.image_text(job, len(job.claims))))
        for job in jobs:
            job.latents = None

    def image_text(self, job: Job, index: int) -> str | None:
        """The settings that made image ``index`` of a job, to be written into its file; None when the
        endpoint or the request turned that off. The prompts go in only with ``log_prompts``."""
        if not (self.settings.image_metadata and job.request.metadata):
            return None
        return infotext(job.request, job.seed, index, self.source, self.settings.log_prompts)

    def encode(self, jobs: Sequence[Job]) -> None:
        """Every image of every open job as a file in its format; a job with an image that fails to encode
        gets a 500 of its own."""
        for job in jobs:
            if not job.open:
                continue
            files = [claim() for claim in job.claims]
            job.claims = []
            failure = next((item for item in files if isinstance(item, Exception)), None)
            if failure is not None:
                logger.error("encoding an image failed", exc_info=failure)
                job.fail(500, "InternalServerError", "image encoding failed; see server logs")
                continue
            job.files = files

    @staticmethod
    def reply(jobs: Sequence[Job]) -> None:
        """The 200 body of every job no stage has failed, its files in base64."""
        for job in jobs:
            if not job.open:
                continue
            request = job.request
            base64_files = [Base64Text(base64.b64encode(data).decode("ascii")) for data in job.files]
            body = {"image": base64_files[0], "seed": job.seed, "width": request.width, "height": request.height,
                    "format": request.output_format}
            if request.num_images > 1:
                body["images"] = base64_files
            job.reply = Reply(200, body, tuple(job.files))

    # ------------------------------------------------------------------ for the warm-up
    def fits(self, request: GenerationRequest, batch: int) -> bool:
        """Whether ``batch`` copies of ``request`` generate and decode in device memory (capturing the
        graphs of that batch on the way): the warm-up's probe of the device's capacity."""
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

    def limit_batch(self, below: int) -> int:
        """Run the graphed calls' batches of ``below`` images or more in chunks of the largest graph batch
        size under it (the graphs above it are dropped; without graphs, batches run whole as they always
        do); returns that size.

        Raises:
            RuntimeError: no size is under ``below``: not even one image fits.
        """
        settings = self.settings
        largest = max((size for size in settings.cuda_graph_batch_sizes if size < below), default=0)
        if not largest:
            raise RuntimeError(f"one {settings.warmup_size}x{settings.warmup_size} image does not fit in "
                               "device memory (see max_gpu_memory_gib)")
        logger.warning("a batch of %d does not fit in device memory: batches run in chunks of at most %d",
                       below, largest)
        if self.graphs is not None:
            self.graphs.limit_batch(largest)
        return largest


def _image_note(request: GenerationRequest) -> str:
    """For the debug line of an image-to-image request: its input's format and size, and what it became."""
    image = request.init_image
    if image is None:
        return ""
    (width, height), (to_width, to_height) = image.source_size, image.size
    return f" from a {image.source_format} of {width}x{height}, fitted to {to_width}x{to_height}"


def _image_counts(jobs: Sequence[Job]) -> list[int]:
    return [job.request.num_images for job in jobs]
