#!/usr/bin/env python3
"""Check that the image's torch CUDA build runs on the NVIDIA driver of the endpoint's inference AMI.

The torch wheel brings its own CUDA runtime; the driver comes from the SageMaker host, chosen by the
production variant's ``inference_ami_version``. The two are set in different places (Dockerfile:
``TORCH_INDEX_URL``/``TORCH_VARIANT``; infra/variables.tf: ``inference_ami_version``); the table that
connects them, with its sources, is sdturbo_ops/gpu_stack.py. Every AMI the stack accepts is checked,
its default first.

Exit codes: 0 every accepted AMI runs the image's torch, 1 one does not (or the release torch is no CUDA
build), 2 a file could not be read or parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdturbo_ops import cli
from sdturbo_ops.gpu_stack import Incompatible, StackError, check
from sdturbo_ops.paths import ROOT

EXIT_INCOMPATIBLE, EXIT_UNREADABLE = 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile", help="default: ./Dockerfile")
    parser.add_argument("--variables", type=Path, default=ROOT / "infra" / "variables.tf",
                        help="default: infra/variables.tf")
    args = parser.parse_args(argv)
    try:
        ok, lines = check(args.dockerfile.read_text(), args.variables.read_text())
    except (OSError, StackError) as exc:
        raise cli.CliError(str(exc), EXIT_INCOMPATIBLE if isinstance(exc, Incompatible) else EXIT_UNREADABLE) from None
    print("\n".join(lines))
    return 0 if ok else EXIT_INCOMPATIBLE


if __name__ == "__main__":
    cli.run(main)
