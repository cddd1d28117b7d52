"""Compiled kernels for a model folder: the UNet and VAE decoder compiled on this GPU and saved into the
folder (``<model-dir>/compiled/sm_XY-*/``), so workers on that GPU type start with them (handler/compiled.py).

Kernels only serve workers with the same shaping settings, so the settings are the archive's
model-config.yaml ``handler:`` section with the model's endpoint profile and the caller's overrides on top,
as the endpoint will run them.
"""

from __future__ import annotations

from pathlib import Path


def kernel_settings(config: Path, model_dir: Path, overrides: dict[str, str], profile: str | None = None):
    """The engine settings the kernels are built for: the archive's ``handler:`` section, with ``profile``'s
    endpoint settings on top (handler/profiles.yaml: what the SageMaker stack runs that model with, e.g. no
    CUDA graphs on a T4), then ``overrides``. Kernels serve only workers with the same shaping settings.

    Raises:
        handler.settings.SettingsError: a setting is unknown or out of range.
        KeyError: no profile has that name.
    """
    from handler.settings import load_settings
    from sdturbo_ops.torchserve_config import endpoint_sizing, model_config

    endpoint = endpoint_sizing(profile)[1] if profile else {}
    values = dict(model_config(config, handler_overrides={**endpoint, **overrides}).get("handler") or {})
    if values.get("compile", "none") == "none":
        values["compile"] = "default"
    values.update(model_dir=model_dir.resolve().name, device="cuda", warmup=True, compile_without_artifacts=True)
    return load_settings(values, {})


def build_kernels(model_dir: Path, settings) -> Path:
    """Load the model, warm it up (which compiles every shape the workers use) and save the kernels;
    returns the folder written."""
    from handler.engine import Engine
    from handler.warmup import warm_up

    engine = Engine.load(model_dir.resolve().parent, settings)
    warm_up(engine)
    return engine.kernels.save()
