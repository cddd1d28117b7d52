"""The settings compiled kernels are built for (sdturbo_ops/kernels.py): the archive's, compiled cold on the
GPU, whatever the config says about compiling."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler.settings import SettingsError
from sdturbo_ops.kernels import kernel_settings
from sdturbo_ops.paths import MODEL_CONFIG


def test_kernels_are_built_for_the_archives_settings_compiled_cold_on_cuda(tmp_path):
    settings = kernel_settings(MODEL_CONFIG, tmp_path / "sd-turbo", {"vae_decode_batch": "8", "compile": "none"})
    assert (settings.model_dir, settings.device, settings.vae_decode_batch) == ("sd-turbo", "cuda", 8)
    assert settings.compile == "default" and settings.compile_without_artifacts and settings.warmup


def test_an_unknown_setting_is_refused():
    with pytest.raises(SettingsError, match="cuda_graph"):
        kernel_settings(MODEL_CONFIG, Path("model"), {"cuda_graph": "false"})
