#!/usr/bin/env python3
"""Time the engine's GPU pieces alone (sdturbo_ops/probe.py): the VAE decoder's variants, and the shipped
engine's generate and decode under the profiler (wall against device-busy time, the top kernels).

  gpu_probe.py --model-dir /tmp/sd-turbo-full --out OUT/probe.jsonl \\
      --decoder subpixel:eager:4,nearest:eager:4,subpixel:default:4,nearest:default:4
  gpu_probe.py --model-dir /tmp/sd-turbo-full --out OUT/probe.jsonl --engine-batch 16 --engine-batch 1

Each result is one JSON line in --out, written as soon as it is measured. Exit codes: 0 done, 2 bad
arguments, 3 no model folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.probe import parse_variants, probe_decoder, probe_engine, probe_parity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=cli.absolute_path, required=True, help="diffusers folder")
    parser.add_argument("--out", type=cli.absolute_path, required=True, help="JSON lines file to append to")
    parser.add_argument("--decoder", type=parse_variants, default=[],
                        help="decoder variants upsample:mode:slice, comma-separated (mode eager or a compile mode)")
    parser.add_argument("--batch", type=int, default=16, help="latents per decoder timing (default 16)")
    parser.add_argument("--side", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--iterations", type=int, default=10, help="timed calls per decoder variant")
    parser.add_argument("--engine-batch", type=int, action="append", default=[],
                        help="profile the engine's generate and decode at this batch (repeatable)")
    parser.add_argument("--parity", type=int, default=0, metavar="N",
                        help="compare the engine's images with plain diffusers' for N seeds (with --engine-batch)")
    parser.add_argument("--handler-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="engine setting for --engine-batch (repeatable); the archive's settings otherwise")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu, for a smoke test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(name)s %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    for name in ("handler", "sdturbo_ops"):
        logging.getLogger(name).setLevel(logging.INFO)
    if not (args.model_dir / "model_index.json").is_file():
        raise cli.CliError(f"{args.model_dir} is not a diffusers folder", 3)
    try:
        overrides = cli.key_values(args.handler_setting)
    except ValueError as exc:
        parser.error(f"--handler-setting: {exc}")
    import torch

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.decoder:
        probe_decoder(args.model_dir, args.out, args.decoder, args.batch, args.side, args.iterations, device, dtype)
    if args.engine_batch:
        engine = load_engine(args.model_dir, {**overrides, "device": args.device})
        for batch in args.engine_batch:
            probe_engine(engine, args.out, batch)
        if args.parity:
            probe_parity(engine, args.model_dir, args.out, args.parity)
    return 0


def load_engine(model_dir: Path, overrides: dict):
    """The engine with the archive's settings (and ``overrides``), warmed up as a worker warms it up."""
    from handler.engine import Engine
    from handler.settings import load_settings
    from handler.warmup import warm_up
    from sdturbo_ops.paths import MODEL_CONFIG
    from sdturbo_ops.torchserve_config import model_config

    shipped = model_config(MODEL_CONFIG).get("handler") or {}
    engine = Engine.load(model_dir.parent, load_settings({**shipped, **overrides, "model_dir": model_dir.name}, {}))
    warm_up(engine)
    return engine


if __name__ == "__main__":
    cli.run(main)
