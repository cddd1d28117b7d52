#!/usr/bin/env python3
"""Download SD-turbo (or SDXL-turbo) from the Hugging Face Hub as a diffusers folder, fp16 safetensors only.

Skips the repositories' single-file checkpoints (5-7 GB each) and any pickle weights, so a download is
about 2.6 GB for sd-turbo. Files already present are not fetched again. Needs network access to the Hub;
set HF_TOKEN if the model requires accepting its licence.

Exit codes: 0 downloaded, 1 download failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse

from handler.models import MODELS
from sdturbo_ops import cli
from sdturbo_ops.download_model import NoFp16FixVae, download_model

EXIT_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="sd-turbo", help="which model (default: sd-turbo)")
    parser.add_argument("--out", type=cli.absolute_path, required=True, help="folder to write the diffusers model to")
    parser.add_argument("--revision", help="hub revision (commit or tag) to pin; default: main")
    parser.add_argument("--tiny-decoder", action="store_true",
                        help="also fetch the TAESD tiny decoder into OUT/taesd (for decoder: tiny)")
    parser.add_argument("--fp16-fix-vae", action="store_true",
                        help="sdxl-turbo: also fetch madebyollin/sdxl-vae-fp16-fix into OUT/vae-fp16-fix, so the "
                             "VAE decodes in fp16 instead of fp32")
    args = parser.parse_args(argv)

    repo_id = MODELS[args.model].repo_id
    try:
        download_model(args.model, args.out, args.revision, args.tiny_decoder, args.fp16_fix_vae,
                       announce=lambda line: print(f"downloading {line}", flush=True))
    except NoFp16FixVae as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    except Exception as exc:  # network, auth, disk: one clear line, not a traceback
        raise cli.CliError(f"download of {repo_id} failed: {type(exc).__name__}: {exc}", EXIT_FAILED) from None
    if not (args.out / "model_index.json").is_file():
        raise cli.CliError(f"{args.out} has no model_index.json after the download", EXIT_FAILED)
    print(f"downloaded {repo_id} to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
