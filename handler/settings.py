"""Engine settings: one typed place for every knob, read from model-config.yaml then the environment.

Each field's default is written here and nowhere else. The archive's ``model-config.yaml`` carries a
``handler:`` section for overrides only (tests/handler/test_settings.py fails if it restates a default);
any field can be overridden by an environment variable named ``SDTURBO_<FIELD>`` (for example ``SDTURBO_DEVICE=cpu``). The ``SDTURBO_``
namespace belongs to these fields alone: an unknown YAML key or an ``SDTURBO_*`` variable that names no
field fails the model load loudly, so a typo (``SDTURBO_CUDA_GRAPH=false``) is never silently ignored.
The serve entrypoint's own variables use another prefix (``SDSERVE_``, scripts/serve.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "SDTURBO_"


class SettingsError(ValueError):
    """The handler settings are invalid; the message names the offending field."""


class EngineSettings(BaseModel):
    """Everything the engine needs to know that is not part of a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where the diffusers folder (model_index.json, unet/, vae/, ...) lives, relative to the archive.
    model_dir: str = "model"
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"

    # One real generation at start-up, so the first caller does not pay for lazy CUDA/cuDNN init.
    warmup: bool = True
    warmup_size: int = Field(512, ge=64, le=1024, multiple_of=8)

    # Images per VAE call, counted at 512x512. The decoder's activations, not the UNet, set peak memory, so
    # large batches are decoded in slices; larger images make proportionally smaller slices (a 1024x1024
    # image counts as four), so the peak is bounded by pixels, not by image count. Image-to-image's
    # starting images go through the VAE encoder (the decoder's mirror image) in slices of the same size.
    vae_decode_batch: int = Field(4, ge=1, le=64)
    # "full" is SD's KL autoencoder; "tiny" is a TAESD-shaped decoder (~18x fewer FLOPs, softer detail).
    decoder: Literal["full", "tiny"] = "full"
    tiny_decoder_dir: str = "taesd"
    # An SDXL VAE finetuned not to overflow in fp16 (madebyollin/sdxl-vae-fp16-fix, the same architecture),
    # used instead of vae/ when the model folder carries it (`make model MODEL=sdxl-turbo FP16_FIX_VAE=1`):
    # SDXL then decodes in fp16 instead of fp32, and a slice that overflows anyway is decoded again in fp32.
    fp16_fix_vae_dir: str = "vae-fp16-fix"

    # GPU speed levers; each one is measured by scripts/bench.py (docs/PERFORMANCE.md).
    channels_last: bool = True
    fuse_qkv: bool = True
    # The full VAE decoder's three upsamplers (nearest 2x + 3x3 conv) as "subpixel": one 2x2 conv on the
    # small image and an interleave, the same function in 4/9 of their FLOPs (handler/upsample.py); or
    # "nearest", diffusers' own. "auto" is subpixel on the GPUs it was measured faster on (Hopper, sm_90,
    # and newer) and nearest on the others until measured there (the T4 of ml.g4dn is sm_75). CUDA only.
    decoder_upsample: Literal["auto", "subpixel", "nearest"] = "auto"
    # torch.compile of the UNet and the decoder (CUDA only), from kernels shipped in the model folder
    # (handler/compiled.py): without kernels built for this GPU type, torch and settings, the worker
    # serves eagerly and says why, so "default" (shipped) costs nothing where no kernels were built.
    # compile_without_artifacts compiles cold at start instead (minutes): that is how
    # `make compiled-kernels` builds them.
    compile: Literal["none", "default", "max-autotune-no-cudagraphs"] = "default"
    compiled_kernels_dir: str = "compiled"
    compile_without_artifacts: bool = False
    # CUDA graphs for the text encoder, UNet and VAE decode and encode (CUDA only; ignored elsewhere). A
    # batch is padded up to the next of these sizes; the warm-up captures each one (handler/cuda_graphs.py).
    cuda_graphs: bool = True
    cuda_graph_batch_sizes: tuple[Annotated[int, Field(ge=1, le=64)], ...] = Field((1, 2, 4, 8, 16), min_length=1)
    # A ceiling on this worker's GPU memory (torch's caching allocator; the CUDA context comes on top, about
    # 0.5 GiB), so several workers share one GPU predictably, e.g. two within a 16 GB T4. 0 = no ceiling.
    # A request that does not fit under it gets 507; the worker keeps serving. Two workers on a 16 GB T4: 6.5
    # each with cuda_graphs off, so 1024x1024 requests fit too (graph pools are private to their graphs;
    # docs/PERFORMANCE.md run 9): SD-turbo's profile for the SageMaker stack (handler/profiles.yaml) sets exactly that.
    max_gpu_memory_gib: float = Field(0.0, ge=0.0, le=1024.0)

    # Image encoding. "fast" is handler/png.py (Up filter + zlib run-length, deflated in parallel bands for
    # a lone image): ~3x faster than Pillow's level 1 and smaller on photographs. "pillow" is Pillow's
    # encoder at png_compress_level (level 1 is ~3x faster than level 6 for ~10 % larger files).
    png_encoder: Literal["fast", "pillow"] = "fast"
    png_compress_level: int = Field(1, ge=0, le=9)
    jpeg_quality: int = Field(90, ge=1, le=100)
    webp_quality: int = Field(90, ge=1, le=100)
    # Pillow releases the GIL while compressing, so a pool overlaps encoding of a batch. 0 = one thread per
    # CPU core, at most 8 (several workers per GPU share the cores).
    encode_threads: int = Field(0, ge=0, le=64)

    # Return freed host memory to the OS after each batch (glibc malloc_trim), so a worker's RSS stays flat.
    trim_memory_after_batch: bool = True

    # Prompts are user data: they are only logged at DEBUG, and only when this is on. The same switch decides
    # whether the prompts go into the images' metadata (image_metadata): off, they are kept nowhere beyond
    # the request's own reply, and an image file outlives the request (it is shared, stored, in S3).
    log_prompts: bool = False
    # Write the settings that made each image into its file (handler/metadata.py: A1111's "parameters" text
    # in a PNG text chunk, in EXIF for JPEG and WebP); a request can leave them out with metadata: false.
    image_metadata: bool = True

    @field_validator("cuda_graph_batch_sizes", mode="before")
    @classmethod
    def _split_sizes(cls, value: Any) -> Any:
        # From the environment the sizes arrive as "1,2,4,8".
        return [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("cuda_graph_batch_sizes")
    @classmethod
    def _sorted_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))


def load_settings(
    handler_section: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> EngineSettings:
    """Merge the YAML ``handler:`` section with ``SDTURBO_*`` environment overrides.

    Args:
        handler_section: the ``handler`` mapping of model-config.yaml (None when absent).
        environ: usually ``os.environ``; every ``SDTURBO_*`` key must name a settings field.

    Raises:
        SettingsError: a value has the wrong type or range, or a YAML key or ``SDTURBO_*`` variable is unknown.
    """
    values: dict[str, Any] = dict(handler_section or {})
    unknown = []
    for key, env_value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name in EngineSettings.model_fields and key == ENV_PREFIX + name.upper():
            values[name] = env_value
        else:
            unknown.append(key)
    if unknown:
        raise SettingsError(
            f"unknown environment variable(s) {', '.join(sorted(unknown))}: {ENV_PREFIX}<FIELD> overrides a "
            f"handler setting and these name none (fields: {', '.join(EngineSettings.model_fields)})"
        )
    try:
        # Lax mode so that environment strings ("true", "8") coerce to bool/int.
        return EngineSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'handler'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid handler settings: {problems}") from exc
