#!/usr/bin/env python3
"""Compile the UNet and VAE decoder of a model folder for this GPU and save the kernels into it.

Run it on a GPU of the kind the endpoint runs (for ml.g4dn that is an NVIDIA T4, sm_75), before
`make mar`: the kernels land in ``<model-dir>/compiled/sm_XY/`` and travel with the model data, so a
worker on that GPU type starts with compiled code in seconds instead of compiling for minutes
(handler/compiled.py). The settings are the archive's model-config.yaml ``handler:`` section, with the
endpoint's for ``--profile`` (handler/profiles.yaml, as the stack runs the model) and ``--handler-setting``
overrides on top, because kernels only serve workers with the same shaping settings.

  scripts/build_compiled_kernels.py --model-dir models/sd-turbo --profile sd-turbo

Exit codes: 0 built, 1 compiling or saving failed, 2 bad arguments, 3 no CUDA GPU or no model.
"""

from __future__ import annotations

import argparse
import logging
import time

from sdturbo_ops import cli
from sdturbo_ops.paths import MODEL_CONFIG
from sdturbo_ops.torchserve_config import profiles

EXIT_FAILED, EXIT_UNAVAILABLE = 1, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=cli.absolute_path, required=True,
                        help="diffusers folder (has model_index.json)")
    parser.add_argument("--config", type=cli.absolute_path, default=MODEL_CONFIG,
                        help="model-config.yaml whose handler: settings the workers will run with")
    parser.add_argument("--profile", choices=sorted(profiles()),
                        help="build for the settings the endpoint runs this model with (handler/profiles.yaml, "
                             "as the SageMaker stack sets them; make compiled-kernels: MODEL)")
    parser.add_argument("--handler-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a handler: setting (repeatable), as the archive will")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    try:
        overrides = cli.key_values(args.handler_setting)
    except ValueError as exc:
        parser.error(f"--handler-setting: {exc}")

    import torch

    from handler.settings import SettingsError
    from sdturbo_ops.kernels import build_kernels, kernel_settings

    if not (args.model_dir / "model_index.json").is_file():
        raise cli.CliError(f"{args.model_dir} has no model_index.json", EXIT_UNAVAILABLE)
    if not torch.cuda.is_available():
        raise cli.CliError("compiled kernels are built on the GPU type that will run them; no CUDA GPU here",
                           EXIT_UNAVAILABLE)
    try:
        settings = kernel_settings(args.config, args.model_dir, overrides, args.profile)
    except SettingsError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    started = time.perf_counter()
    print(f"compiling for {torch.cuda.get_device_name()} (a cold compile takes minutes)...", flush=True)
    try:
        folder = build_kernels(args.model_dir, settings)
    except Exception as exc:  # report, do not leave a half-written folder unexplained
        raise cli.CliError(f"building compiled kernels failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"wrote {folder} ({size:.0f} MiB) in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    cli.run(main)
