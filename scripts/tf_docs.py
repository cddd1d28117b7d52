#!/usr/bin/env python3
"""Write the variable and output tables of infra/README.md (and infra/bootstrap) from the .tf files.

The tables sit between ``<!-- BEGIN TF DOCS -->`` and ``<!-- END TF DOCS -->``; `--check` fails when
they are stale, which the tests run, so the documentation cannot drift from the code.

Exit codes: 0 up to date (or rewritten), 1 stale (with --check), 2 bad usage.
"""

from __future__ import annotations

from sdturbo_ops import cli, generated_docs, tf_docs


def main(argv: list[str] | None = None) -> int:
    return generated_docs.rewrite(tf_docs.SECTION, argv, __doc__)


if __name__ == "__main__":
    cli.run(main)
