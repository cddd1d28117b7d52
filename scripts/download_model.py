#!/usr/bin/env python3
"""Download SD-turbo (or SDXL-turbo) from the Hugging Face Hub as a diffusers folder, fp16 safetensors only.

Skips the repositories' single-file checkpoints (5-7 GB each) and any pickle weights, so a download is
about 2.6 GB for sd-turbo. Files already present are not fetched again. Needs network access to the Hub;
set HF_TOKEN if the model requires accepting its licence.

Exit codes: 0 downloaded, 1 download failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handler.models import DOWNLOAD_PATTERNS, MODELS, TINY_DECODER_PATTERNS  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def download(repo_id: str, out: Path, patterns: tuple[str, ...], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download  # shows a progress bar per file

    return Path(
        snapshot_download(repo_id=repo_id, local_dir=out, allow_patterns=list(patterns), revision=revision)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="sd-turbo", help="which model (default: sd-turbo)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the diffusers model to")
    parser.add_argument("--revision", help="hub revision (commit or tag) to pin; default: main")
    parser.add_argument("--tiny-decoder", action="store_true",
                        help="also fetch the TAESD tiny decoder into OUT/taesd (for decoder: tiny)")
    args = parser.parse_args(argv)

    spec = MODELS[args.model]
    try:
        download(spec.repo_id, args.out, DOWNLOAD_PATTERNS, args.revision)
        if args.tiny_decoder:
            download(spec.tiny_decoder_repo, args.out / "taesd", TINY_DECODER_PATTERNS, None)
    except Exception as exc:  # network, auth, disk: one clear line, not a traceback
        print(f"error: download of {spec.repo_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not (args.out / "model_index.json").is_file():
        print(f"error: {args.out} has no model_index.json after the download", file=sys.stderr)
        return EXIT_FAILED
    print(f"downloaded {spec.repo_id} to {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
