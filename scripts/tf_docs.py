#!/usr/bin/env python3
"""Write the variable and output tables of infra/README.md (and infra/bootstrap) from the .tf files.

The tables sit between ``<!-- BEGIN TF DOCS -->`` and ``<!-- END TF DOCS -->``; `--check` fails when
they are stale, which the tests run, so the documentation cannot drift from the code.

Exit codes: 0 up to date (or rewritten), 1 stale (with --check), 2 bad usage.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = {REPO / "infra": "", REPO / "infra" / "bootstrap": "bootstrap: "}
BEGIN, END = "<!-- BEGIN TF DOCS -->", "<!-- END TF DOCS -->"


def blocks(text: str, kind: str) -> list[tuple[str, str]]:
    """(name, body) of each top-level ``kind "name" { ... }`` block, by brace matching."""
    found = []
    for match in re.finditer(rf'^{kind}\s+"([^"]+)"\s*{{', text, re.MULTILINE):
        depth, index = 1, match.end()
        while depth and index < len(text):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        found.append((match.group(1), text[match.end():index - 1]))
    return found


def attribute(body: str, name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*(.+)$', body, re.MULTILINE)
    return match.group(1).strip() if match else ""


def tables(root: Path, title: str) -> str:
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, body in blocks((root / "variables.tf").read_text(), "variable"):
        default = attribute(body, "default") or "required"
        description = attribute(body, "description").strip('"')
        rows.append(f"| `{name}` | `{attribute(body, 'type')}` | `{default}` | {description} |")
    rows += ["", "| output | description |", "|---|---|"]
    for name, body in blocks((root / "outputs.tf").read_text(), "output"):
        rows.append(f"| `{name}` | {attribute(body, 'description').strip(chr(34))} |")
    return f"### {title}\n\n" + "\n".join(rows) + "\n"


def render() -> str:
    return "\n".join(tables(root, f"{prefix}inputs and outputs" if prefix else "Inputs and outputs")
                     for root, prefix in ROOTS.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if infra/README.md is stale")
    args = parser.parse_args(argv)
    readme = REPO / "infra" / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: {readme} lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{render()}{END}{tail}"
    if updated == text:
        return 0
    if args.check:
        print("infra/README.md is stale: run `python scripts/tf_docs.py`", file=sys.stderr)
        return 1
    readme.write_text(updated)
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
