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


@pytest.mark.parametrize("model", ["sd-turbo", "sdxl-turbo"])
def test_make_compiled_kernels_builds_for_the_settings_the_endpoint_runs_the_model_with(model):
    """Kernels built with other shaping settings than a worker's are refused by it (handler/compiled.py), so
    `make compiled-kernels MODEL=...` must build for the archive `make mar MODEL=...` makes, with the
    endpoint's own settings on top: SDXL-turbo's no-graphs, 2-image VAE slices; SD-turbo's no-graphs T4."""
    import shlex
    import subprocess

    from handler.compiled import _SHAPING_SETTINGS
    from handler.settings import load_settings
    from sdturbo_ops.paths import ROOT
    from sdturbo_ops.torchserve_config import endpoint_sizing, model_config

    dry_run = subprocess.run(["make", "-n", "compiled-kernels", f"MODEL={model}"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    command = shlex.split(next(line for line in dry_run.splitlines() if "build_compiled_kernels.py" in line))
    profile = command[command.index("--profile") + 1] if "--profile" in command else None
    built = kernel_settings(MODEL_CONFIG, Path("models") / model, {}, profile)
    archive = model_config(MODEL_CONFIG, handler_overrides=endpoint_sizing(model)[1])
    served = load_settings(archive["handler"], {})
    shaping = [name for name in _SHAPING_SETTINGS if name != "compile"]  # the build compiles whatever is shipped
    assert {name: getattr(built, name) for name in shaping} == {name: getattr(served, name) for name in shaping}
