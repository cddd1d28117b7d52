#!/usr/bin/env python3
"""Build an SD-turbo-shaped (or SDXL-turbo-shaped) diffusers pipeline with random weights, offline.

The same folder layout as the hub repositories (model_index.json, scheduler/, text_encoder/,
tokenizer/, unet/, vae/, fp16 safetensors), so the handler's one loading path serves both.

  --size tiny   a few MB; a 512x512 image takes a fraction of a second on a CPU (tests, demo)
  --size full   the published architecture: SD-turbo (UNet 865.9 M parameters, 2.5 GB) or, with
                --arch sdxl, SDXL-turbo (UNet 2.57 B parameters, 6.9 GB): same compute as the real
                model, so it is what the GPU benchmark runs. Its images are noise. On a GPU machine
                --device cuda makes the weights faster.

Exit codes: 0 built, 1 failed, 2 bad arguments, 3 output exists (use --force).
"""

from __future__ import annotations

import argparse
import sys

from sdturbo_ops import cli

EXIT_FAILED, EXIT_EXISTS = 1, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny", help="model size (default: tiny)")
    parser.add_argument("--arch", choices=("sd", "sdxl"), default="sd",
                        help="sd: SD-turbo shape; sdxl: SDXL-turbo shape (default: sd)")
    parser.add_argument("--out", type=cli.absolute_path, required=True, help="folder to write (replaced atomically)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights (default: 0)")
    parser.add_argument("--device", default="cpu", help="where to initialise weights; cuda is faster for full")
    parser.add_argument("--tiny-decoder", action="store_true", help="also write a TAESD-shaped decoder to taesd/")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        raise cli.CliError(f"{args.out} exists; pass --force to replace it", EXIT_EXISTS)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    from sdturbo_ops.offline_model import build

    def progress(name: str, done: int, total: int) -> None:
        print(f"{args.arch}-{args.size}: making {name} ({done + 1}/{total})", file=sys.stderr, flush=True)

    try:
        build(args.arch, args.size, args.out, args.seed, args.device, args.tiny_decoder, progress)
    except Exception as exc:  # report and exit non-zero; the traceback helps nobody running `make demo`
        raise cli.CliError(f"could not build the model: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    print(f"wrote {args.arch}-{args.size} model to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
