#!/usr/bin/env python3
"""Write the variable and output tables of infra/README.md (and infra/bootstrap) from the .tf files.

The tables sit between ``<!-- BEGIN TF DOCS -->`` and ``<!-- END TF DOCS -->``; `--check` fails when
they are stale, which the tests run, so the documentation cannot drift from the code.

Exit codes: 0 up to date (or rewritten), 1 stale (with --check), 2 bad usage.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.tf_docs import README, updated

EXIT_STALE = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if infra/README.md is stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    try:
        fresh = updated(text)
    except ValueError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
    if fresh == text:
        return 0
    if args.check:
        raise cli.CliError("infra/README.md is stale: run `python scripts/tf_docs.py`", EXIT_STALE)
    README.write_text(fresh)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    cli.run(main)
