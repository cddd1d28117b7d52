"""The models this project serves, shared by the download script and the loader so they never disagree."""

from __future__ import annotations

from dataclasses import dataclass

# The hub repositories ship fp16 weights as ``*.fp16.safetensors``; that is the only variant we fetch
# (half the bytes of fp32) and the one the loader asks for.
WEIGHTS_VARIANT = "fp16"


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str
    # A TAESD-family tiny autoencoder for the optional fast decoder (settings.decoder = "tiny").
    tiny_decoder_repo: str
    # A VAE of the same architecture finetuned to decode in fp16 without overflowing, where the model's own
    # VAE cannot (SDXL's: force_upcast); None where it decodes in fp16 as it is (SD-turbo's).
    fp16_fix_vae_repo: str | None = None


MODELS = {
    "sd-turbo": ModelSpec("stabilityai/sd-turbo", "madebyollin/taesd"),
    "sdxl-turbo": ModelSpec("stabilityai/sdxl-turbo", "madebyollin/taesdxl", "madebyollin/sdxl-vae-fp16-fix"),
}

# What a diffusers folder needs: the pipeline index, component configs, tokenizers and the fp16
# safetensors. The repos' single-file checkpoints at the root (5-7 GB) and any pickle weights are skipped.
DOWNLOAD_PATTERNS = (
    "model_index.json",
    "*/config.json",
    "scheduler/scheduler_config.json",
    "tokenizer*/*.json",
    "tokenizer*/merges.txt",
    f"*/*.{WEIGHTS_VARIANT}.safetensors",
)
# A single diffusers model (the tiny decoder, the fp16-fix VAE): its config and safetensors weights.
SINGLE_MODEL_PATTERNS = ("config.json", "diffusion_pytorch_model.safetensors")
