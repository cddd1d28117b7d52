"""The request's documentation, made from its schema (handler/schema.py) so that none restates a bound or a
default by hand: the README's request table, and the help of invoke.py's request flags (as cog derives its
CLI from ``Input(...)``).

The table sits in README.md between ``<!-- BEGIN REQUEST TABLE -->`` and ``<!-- END REQUEST TABLE -->``;
scripts/request_docs.py rewrites it, and `--check` (which the tests run) fails when it is stale
(sdturbo_ops/generated_docs.py).
"""

from __future__ import annotations

from typing import Any

from sdturbo_ops.generated_docs import Generated
from sdturbo_ops.paths import ROOT

README = ROOT / "README.md"
BEGIN, END = "<!-- BEGIN REQUEST TABLE -->", "<!-- END REQUEST TABLE -->"


def fields() -> dict[str, dict[str, Any]]:
    """Each request field's JSON Schema, an optional field's ``null`` alternative folded away."""
    # Imported here: a CLI that shows this in its --help reports a missing install as one line (cli.run).
    from handler.schema import request_json_schema

    schema = request_json_schema()
    found = {}
    for name, spec in schema["properties"].items():
        found[name] = next((part for part in spec.get("anyOf", []) if part.get("type") != "null"), spec) | {
            key: value for key, value in spec.items() if key in ("default", "description") or key.startswith("x-")}
        found[name]["required"] = name in schema.get("required", ())
    return found


def default(spec: dict[str, Any]) -> str:
    """A field's default as the table states it (Markdown: values in backticks)."""
    return "required" if spec["required"] else spec.get("x-default", f"`{spec.get('default')}`")


def bounds(spec: dict[str, Any]) -> str:
    """A field's bounds in words: ``1–4``, ``over 0.0, up to 1.0``, ``256–1024, multiple of 8``."""
    if "x-bounds" in spec:
        return spec["x-bounds"]
    low = spec.get("minimum", spec.get("minLength"))
    high = spec.get("maximum", spec.get("maxLength"))
    if "exclusiveMinimum" in spec:
        low = f"over {spec['exclusiveMinimum']}, up to "
    elif low is not None:
        low = f"{low}–"
    if low is None and high is None:
        return ""
    text = f"{low}{high}" + (" characters" if "maxLength" in spec else "")
    return text + (f", multiple of {spec['multipleOf']}" if "multipleOf" in spec else "")


def table() -> str:
    """The README's request table: field, type, default, bounds, why."""
    rows = ["| field | type | default | bounds | why |", "|---|---|---|---|---|"]
    for name, spec in fields().items():
        kind = " \\| ".join(f"`{value}`" for value in spec["enum"]) if "enum" in spec else spec["type"]
        rows.append(f"| `{name}` | {kind} | {default(spec)} | {bounds(spec)} | {spec['description']} |")
    return "\n".join(rows) + "\n"


def flag_help(name: str) -> str:
    """The help of the command-line flag that sets field ``name``: its bounds and the server's default."""
    spec = fields()[name]
    return f"{bounds(spec)} (server default: {default(spec).replace('`', '')})".lstrip()


def choices(name: str) -> tuple[str, ...]:
    """The values an enumerated field takes (``output_format``'s formats)."""
    return tuple(fields()[name]["enum"])


SECTION = Generated(README, BEGIN, END, table, "python scripts/request_docs.py")
