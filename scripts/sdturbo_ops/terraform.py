"""Read the main stack's Terraform outputs, so the AWS CLIs need no hand-copied names.

``path`` is either the stack folder (``infra/``: runs ``terraform output -json`` there) or a file saved
with ``terraform -chdir=infra output -json > outputs.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

# -no-color asks for plain text; a wrapper around terraform (setup-terraform's) may still add colour.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class OutputsError(RuntimeError):
    """The outputs could not be read; the message says why and what to do."""


def terraform_outputs(path: Path) -> dict[str, object]:
    """Output name -> value."""
    if path.is_file():
        text = path.read_text()
    elif path.is_dir():
        terraform = shutil.which("terraform")
        if terraform is None:
            raise OutputsError("terraform is not installed; pass the names as flags or an outputs JSON file")
        result = subprocess.run([terraform, f"-chdir={path}", "output", "-no-color", "-json"], capture_output=True,
                                text=True)
        if result.returncode != 0:
            # the whole diagnostic: its first lines say what is wrong, its last ones where
            raise OutputsError(f"`terraform -chdir={path} output -json` failed:\n"
                               f"{ANSI_ESCAPE.sub('', result.stderr).strip()}")
        text = result.stdout
    else:
        raise OutputsError(f"{path} is neither a Terraform folder nor an outputs JSON file")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise OutputsError(f"{path}: not Terraform output JSON ({exc})") from None
    if not raw:
        raise OutputsError(f"{path}: no outputs (has the stack been applied?)")
    return {name: entry["value"] if isinstance(entry, dict) and "value" in entry else entry
            for name, entry in raw.items()}


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key
