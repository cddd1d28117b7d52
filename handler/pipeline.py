"""Load a diffusers text-to-image pipeline from a local folder, safely, and apply the layout speed-ups.

One loading path serves the real ``stabilityai/sd-turbo`` and ``stabilityai/sdxl-turbo`` downloads and the
offline random-weight models: diffusers picks the pipeline class from ``model_index.json``. The
image-to-image pipeline is made from the loaded one's components, so both share one copy of the weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from handler.models import WEIGHTS_VARIANT
from handler.settings import EngineSettings
from handler.upsample import fold_decoder_upsamplers, use_subpixel

logger = logging.getLogger(__name__)

# Pickle-based weight formats can run code when loaded; only safetensors are accepted.
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
# diffusers warns with the *truncated prompt text* when a prompt exceeds 77 tokens. Prompts are user
# data and must not reach the logs at INFO/WARNING, so these pipeline loggers only report errors.
_PROMPT_LEAKING_LOGGERS = (
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img",
)


class ModelLoadError(RuntimeError):
    """The model folder is missing, incomplete, unsafe or unreadable; the message says which."""


def check_model_dir(model_dir: Path) -> dict:
    """Fail early, with a message a person can act on, before diffusers produces a stack trace.

    Returns:
        The parsed ``model_index.json``.
    """
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(
            f"no model_index.json in {model_dir}: build a model with `make model` (real weights) "
            "or `make tiny-model` (offline test model), then rebuild the archive"
        )
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{index_path} is not valid JSON: {exc}") from exc
    for component in ("unet", "vae", "text_encoder"):
        folder = model_dir / component
        if not any(folder.glob("*.safetensors")):
            pickles = [p.name for p in folder.glob("*") if p.suffix in _PICKLE_SUFFIXES]
            hint = f" (found pickle files {pickles}, which are refused)" if pickles else ""
            raise ModelLoadError(f"{folder} holds no .safetensors weights{hint}")
    return index


def _quiet_libraries() -> None:
    """Progress bars are noise in server logs, and some pipeline warnings quote prompts."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    for name in _PROMPT_LEAKING_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def weights_variant(model_dir: Path) -> str | None:
    """The hub's fp16 files are named ``*.fp16.safetensors``; our download keeps only those."""
    return WEIGHTS_VARIANT if any((model_dir / "unet").glob(f"*.{WEIGHTS_VARIANT}.safetensors")) else None


def load_pipeline(model_dir: Path, device: torch.device, dtype: torch.dtype, fp16_fix_vae: Path | None = None):
    """Load the pipeline named by ``model_index.json`` from ``model_dir``, offline, safetensors only, on
    ``device`` in ``dtype`` (with the VAE in fp32 where the model needs it). An ``fp16_fix_vae`` folder that
    exists replaces ``vae/`` and decodes in ``dtype``.

    Raises:
        ModelLoadError: the folder is not a usable diffusers model.
    """
    from diffusers import DiffusionPipeline  # imported here: it is slow and the schema tests skip it

    index = check_model_dir(model_dir)
    _quiet_libraries()
    extra = {}
    if "safety_checker" in index:
        # SD 2.x-style repos (sd-turbo) ship no safety checker but still set requires_safety_checker.
        extra = {"safety_checker": None, "requires_safety_checker": False}
    if fp16_fix_vae is not None and fp16_fix_vae.is_dir():
        extra["vae"] = load_fp16_fix_vae(fp16_fix_vae, dtype)
    try:
        pipe = DiffusionPipeline.from_pretrained(
            str(model_dir),
            dtype=dtype,
            variant=weights_variant(model_dir),
            use_safetensors=True,
            local_files_only=True,
            **extra,
        )
    except Exception as exc:  # diffusers raises many types (OSError, ValueError, SafetensorError...)
        raise ModelLoadError(f"could not load the pipeline from {model_dir}: {type(exc).__name__}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    if needs_fp32_vae(pipe, dtype):
        pipe.vae.to(torch.float32)  # the engine's decode feeds the VAE in its own dtype
    return pipe


def image_to_image_pipeline(pipe):
    """The image-to-image pipeline for ``pipe``'s model (StableDiffusionImg2ImgPipeline or its SDXL
    sibling), made from ``pipe``'s own components: the same UNet, VAE, text encoders and scheduler
    objects, wrapped or compiled as they are, so no weight is loaded or copied twice."""
    from diffusers import AutoPipelineForImage2Image

    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    return img2img


def load_fp16_fix_vae(path: Path, dtype: torch.dtype):
    """An SDXL-shaped ``AutoencoderKL`` whose weights were finetuned to stay finite in fp16. It is marked
    ``force_upcast=False`` whatever its config says: decoding in fp16 is why it is there (a decode that
    overflows anyway is caught and redone in fp32, handler/vae.py)."""
    from diffusers import AutoencoderKL

    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} holds no .safetensors weights for the fp16-fix VAE")
    try:
        vae = AutoencoderKL.from_pretrained(str(path), dtype=dtype, use_safetensors=True, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"could not load the fp16-fix VAE from {path}: {type(exc).__name__}: {exc}") from exc
    vae.register_to_config(force_upcast=False)
    return vae


def decodes_sdxl_in_fp16(pipe) -> bool:
    """Whether an SDXL-style pipeline's full VAE decodes in fp16 (only an fp16-fix VAE does): then its
    decodes are checked for overflow (handler/vae.py)."""
    return getattr(pipe, "text_encoder_2", None) is not None and pipe.vae.dtype == torch.float16


def load_tiny_decoder(path: Path, device: torch.device, dtype: torch.dtype):
    """A TAESD-shaped ``AutoencoderTiny`` (real weights: madebyollin/taesd or taesdxl)."""
    from diffusers import AutoencoderTiny

    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"decoder=tiny but {path} holds no .safetensors weights")
    try:
        decoder = AutoencoderTiny.from_pretrained(
            str(path), dtype=dtype, use_safetensors=True, local_files_only=True
        )
    except Exception as exc:
        raise ModelLoadError(f"could not load the tiny decoder from {path}: {exc}") from exc
    return decoder.to(device).eval()


def needs_fp32_vae(pipe, dtype: torch.dtype) -> bool:
    """SDXL's VAE overflows in fp16 (``force_upcast``); SD 2.x's decodes fine in fp16 and its pipeline
    ignores the flag, so only SDXL-style pipelines (two text encoders) honour it."""
    return (
        dtype == torch.float16
        and getattr(pipe, "text_encoder_2", None) is not None
        and bool(getattr(pipe.vae.config, "force_upcast", False))
    )


def apply_speedups(pipe, settings: EngineSettings, device: torch.device) -> None:
    """Fused QKV projections, the sub-pixel decoder upsampling and channels-last, each behind its setting;
    CUDA only, where they pay. (torch.compile is handler/compiled.py's job.)"""
    if device.type != "cuda":
        return
    if settings.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
    if use_subpixel(settings.decoder_upsample, torch.cuda.get_device_capability(device)):
        # Before channels_last, so the folded kernels take the same memory format as every other weight.
        folded = fold_decoder_upsamplers(pipe.vae.decoder)
        logger.info("decoder upsampling: %d upsamplers folded into sub-pixel convolutions", folded)
    if settings.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
