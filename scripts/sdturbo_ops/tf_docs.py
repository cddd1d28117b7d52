"""The variable and output tables of infra/README.md (and infra/bootstrap), rendered from the .tf files.

They sit between ``<!-- BEGIN TF DOCS -->`` and ``<!-- END TF DOCS -->``, so the documentation cannot
drift from the code (scripts/tf_docs.py --check, which the tests run; sdturbo_ops/generated_docs.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from sdturbo_ops.generated_docs import Generated
from sdturbo_ops.paths import ROOT

README = ROOT / "infra" / "README.md"
ROOTS = {ROOT / "infra": "", ROOT / "infra" / "bootstrap": "bootstrap: "}
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


SECTION = Generated(README, BEGIN, END, render, "python scripts/tf_docs.py")
updated = SECTION.updated
