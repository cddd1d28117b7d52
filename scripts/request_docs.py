#!/usr/bin/env python3
"""Write README.md's request table (field, type, default, bounds, why) from the request schema, handler/schema.py.

The table sits between ``<!-- BEGIN REQUEST TABLE -->`` and ``<!-- END REQUEST TABLE -->``; `--check` fails
when it is stale, which the tests run, so the documentation cannot drift from the code.

Exit codes: 0 up to date (or rewritten), 1 stale (with --check), 2 bad usage.
"""

from __future__ import annotations

from sdturbo_ops import cli, generated_docs, request_docs


def main(argv: list[str] | None = None) -> int:
    return generated_docs.rewrite(request_docs.SECTION, argv, __doc__)


if __name__ == "__main__":
    cli.run(main)
