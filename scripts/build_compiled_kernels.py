#!/usr/bin/env python3
"""Compile the UNet and VAE decoder of a model folder for this GPU and save the kernels into it.

Run it on a GPU of the kind the endpoint runs (for ml.g4dn that is an NVIDIA T4, sm_75), before
`make mar`: the kernels land in ``<model-dir>/compiled/sm_XY/`` and travel with the model data, so a
worker on that GPU type starts with compiled code in seconds instead of compiling for minutes
(handler/compiled.py). The settings are the archive's model-config.yaml ``handler:`` section (with
``--handler-setting`` overrides), because kernels only serve workers with the same shaping settings.

  scripts/build_compiled_kernels.py --model-dir models/sd-turbo

Exit codes: 0 built, 1 compiling or saving failed, 2 bad arguments, 3 no CUDA GPU or no model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="diffusers folder (has model_index.json)")
    parser.add_argument("--config", type=Path, default=REPO / "handler" / "model-config.yaml",
                        help="model-config.yaml whose handler: settings the workers will run with")
    parser.add_argument("--handler-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a handler: setting (repeatable), as the archive will")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")

    import torch

    from handler.engine import Engine
    from handler.settings import SettingsError, load_settings

    if not (args.model_dir / "model_index.json").is_file():
        print(f"error: {args.model_dir} has no model_index.json", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not torch.cuda.is_available():
        print("error: compiled kernels are built on the GPU type that will run them; no CUDA GPU here",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    values = dict((yaml.safe_load(args.config.read_text()) or {}).get("handler") or {})
    for pair in args.handler_setting:
        key, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--handler-setting wants KEY=VALUE, got {pair!r}")
        values[key] = value
    if values.get("compile", "none") == "none":
        values["compile"] = "default"
    values.update(model_dir=args.model_dir.resolve().name, device="cuda", warmup=True,
                  compile_without_artifacts=True)
    try:
        settings = load_settings(values, {})
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    started = time.perf_counter()
    print(f"compiling for {torch.cuda.get_device_name()} (a cold compile takes minutes)...", flush=True)
    try:
        engine = Engine.load(args.model_dir.resolve().parent, settings)
        engine.warmup()
        folder = engine.kernels.save()
    except Exception as exc:  # report, do not leave a half-written folder unexplained
        print(f"error: building compiled kernels failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    print(f"wrote {folder} ({size:.0f} MiB) in {time.perf_counter() - started:.0f}s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
