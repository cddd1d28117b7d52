"""The served models (handler/models.py): what the download fetches is what the loader reads, and nothing
else."""

from __future__ import annotations

from fnmatch import fnmatch

import pytest

from handler.models import DOWNLOAD_PATTERNS, MODELS, SINGLE_MODEL_PATTERNS, WEIGHTS_VARIANT


def fetched(path: str, patterns=DOWNLOAD_PATTERNS) -> bool:
    return any(fnmatch(path, pattern) for pattern in patterns)


@pytest.mark.parametrize("path", ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json",
                                  "tokenizer/vocab.json", "tokenizer_2/merges.txt",
                                  f"unet/diffusion_pytorch_model.{WEIGHTS_VARIANT}.safetensors",
                                  f"text_encoder/model.{WEIGHTS_VARIANT}.safetensors"])
def test_a_diffusers_folder_is_fetched(path):
    assert fetched(path)


@pytest.mark.parametrize("path", ["sd_turbo.safetensors", "unet/diffusion_pytorch_model.safetensors",
                                  "unet/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin",
                                  "unet/diffusion_pytorch_model.fp16.bin"])
def test_single_file_checkpoints_fp32_and_pickles_are_not(path):
    assert not fetched(path)


def test_the_tiny_decoder_is_safetensors_only():
    assert fetched("diffusion_pytorch_model.safetensors", SINGLE_MODEL_PATTERNS)
    assert not fetched("diffusion_pytorch_model.bin", SINGLE_MODEL_PATTERNS)


def test_each_model_has_its_tiny_decoder():
    assert set(MODELS) == {"sd-turbo", "sdxl-turbo"}
    assert MODELS["sd-turbo"].tiny_decoder_repo.endswith("/taesd")
    assert MODELS["sdxl-turbo"].tiny_decoder_repo.endswith("/taesdxl")
