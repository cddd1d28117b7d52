#!/usr/bin/env python3
"""Check that the image's torch CUDA build exists, has kernels for the endpoint's GPU, and runs on the
NVIDIA driver of the endpoint's inference AMI.

The torch wheel brings its own CUDA runtime; the driver comes from the SageMaker host, chosen by the
production variant's ``inference_ami_version``. The two are set in different places (Dockerfile:
``TORCH_INDEX_URL``/``TORCH_VARIANT``; setup.cfg: the torch pin; infra/variables.tf: ``instance_type``
and ``inference_ami_version``); the tables that connect them, with their sources, are in
sdturbo_ops/gpu_stack.py: the builds PyTorch publishes per release, the GPU per instance family, and the
driver per AMI. Every AMI the stack accepts is checked, its default first.

Exit codes: 0 the build exists and every accepted AMI runs it, 1 it is not published for the pin, has
no kernels for the GPU, is no CUDA build, or an accepted AMI cannot run it, 2 a file could not be read
or parsed.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.gpu_stack import Incompatible, StackError, check
from sdturbo_ops.paths import ROOT

EXIT_INCOMPATIBLE, EXIT_UNREADABLE = 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dockerfile", type=cli.absolute_path, default=ROOT / "Dockerfile",
                        help="default: ./Dockerfile")
    parser.add_argument("--variables", type=cli.absolute_path, default=ROOT / "infra" / "variables.tf",
                        help="default: infra/variables.tf")
    parser.add_argument("--setup-cfg", type=cli.absolute_path, default=ROOT / "setup.cfg",
                        help="default: ./setup.cfg (its torch pin)")
    args = parser.parse_args(argv)
    try:
        ok, lines = check(args.dockerfile.read_text(), args.variables.read_text(), args.setup_cfg.read_text())
    except (OSError, StackError) as exc:
        raise cli.CliError(str(exc), EXIT_INCOMPATIBLE if isinstance(exc, Incompatible) else EXIT_UNREADABLE) from None
    print("\n".join(lines))
    return 0 if ok else EXIT_INCOMPATIBLE


if __name__ == "__main__":
    cli.run(main)
