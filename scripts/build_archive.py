#!/usr/bin/env python3
"""Package the handler, its model-config.yaml and a diffusers model folder into a TorchServe archive.

The archive holds ``torchserve_handler.py``, the ``handler/`` package, ``model-config.yaml`` and the
weights under ``model/``, world-readable (the container's non-root user reads it at /opt/ml/model).
``--profile NAME`` packs the model's sizing from handler/profiles.yaml into that model-config.yaml (the
SageMaker stack reads the same file), e.g. SDXL-turbo's for a 16 GB T4.

Formats: ``no-archive`` (a folder, the default: no unzip at start, measured in the README),
``zip-store`` (an uncompressed .mar) and ``default`` (a deflated .mar).

Exit codes: 0 built, 1 archiver failed, 2 bad arguments, 3 the model folder is not usable.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.archive import FORMATS, build
from sdturbo_ops.paths import MODEL_CONFIG, MODEL_NAME, MODEL_STORE
from sdturbo_ops.torchserve_config import profiles, profile_overrides, write_model_config

EXIT_FAILED, EXIT_BAD_MODEL = 1, 3


def download_command(profile: str | None) -> str:
    """What downloads the model a profile is for (`make mar MODEL=sdxl-turbo` has --profile sdxl-turbo), with the
    fp16-fix VAE where the model has one, as the README says; the plain download without a profile."""
    if profile is None:
        return "the real model with `make model`"
    from handler.models import MODELS

    spec = MODELS.get(profile)
    fp16_fix = " FP16_FIX_VAE=1" if spec is not None and spec.fp16_fix_vae_repo else ""
    return f"{profile} with `make model MODEL={profile}{fp16_fix}`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=cli.absolute_path, required=True,
                        help="diffusers folder (has model_index.json)")
    parser.add_argument("--store", type=cli.absolute_path, default=MODEL_STORE,
                        help="model store (default: model-store/)")
    parser.add_argument("--name", default=MODEL_NAME, help=f"model name in URLs (default: {MODEL_NAME})")
    parser.add_argument("--format", choices=FORMATS, default="no-archive", help="archive format (default: no-archive)")
    parser.add_argument("--config", type=cli.absolute_path, default=MODEL_CONFIG, help="model-config.yaml to ship")
    parser.add_argument("--version", default="1.0", help="archive version (default: 1.0)")
    parser.add_argument("--workers", type=int, help="override minWorkers/maxWorkers of the config (2 on a GPU)")
    parser.add_argument("--profile", choices=sorted(profiles()),
                        help="pack this model's sizing from handler/profiles.yaml into the config (make mar: MODEL)")
    args = parser.parse_args(argv)

    if not (args.model_dir / "model_index.json").is_file():
        raise cli.CliError(f"{args.model_dir} has no model_index.json: download {download_command(args.profile)}, "
                           "or serve the offline tiny one with `make serve-tiny`", EXIT_BAD_MODEL)
    if not args.config.is_file():
        raise cli.CliError(f"{args.config} does not exist", cli.EXIT_USAGE)
    if args.workers is not None and args.workers < 1:
        raise cli.CliError("--workers must be at least 1", cli.EXIT_USAGE)
    with tempfile.TemporaryDirectory(prefix="sdturbo-config-") as scratch:
        overrides, handler_overrides = profile_overrides(args.profile) if args.profile else ({}, {})
        if args.workers is not None:
            overrides.update(minWorkers=args.workers, maxWorkers=args.workers)
        config = args.config
        if overrides or handler_overrides:
            config = write_model_config(args.config, Path(scratch) / "model-config.yaml", overrides, handler_overrides)
        try:
            target = build(args.model_dir, args.store, config, args.name, args.format, args.version)
        except subprocess.CalledProcessError as exc:
            raise cli.CliError(f"torch-model-archiver failed with exit code {exc.returncode}", EXIT_FAILED) from None
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    cli.run(main)
