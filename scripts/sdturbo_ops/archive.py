"""Package the handler, its model-config.yaml and a diffusers model folder into a TorchServe archive.

The archive root gets ``torchserve_handler.py`` (TorchServe's entry point), the ``handler/`` package it
imports, ``model-config.yaml`` and the weights under ``model/``. torch-model-archiver flattens the
folders given to ``--extra-files`` into the root, so it is handed a staging folder of symlinks that holds
exactly ``handler/`` and ``model/`` (it copies through the links).

Whatever the source files' modes, the archive is world-readable: the container runs as a non-root user
and must read it when it is mounted at /opt/ml/model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sdturbo_ops.paths import HANDLER_DIR, MODEL_NAME

# no-archive (a folder: no unzip at start, the S3Prefix layout), zip-store (an uncompressed .mar),
# default (a deflated .mar)
FORMATS = ("no-archive", "zip-store", "default")


def archive_path(store: Path, name: str = MODEL_NAME, fmt: str = "no-archive") -> Path:
    return store / name if fmt == "no-archive" else store / f"{name}.mar"


def find_archive(store: Path, name: str = MODEL_NAME) -> Path | None:
    """The archive ``name`` in ``store``, a folder or a .mar, or None when the store holds neither."""
    for candidate in (store / name, store / f"{name}.mar"):
        if (candidate / "MAR-INF" / "MANIFEST.json").is_file() or candidate.is_file():
            return candidate
    return None


def build(model_dir: Path, store: Path, config: Path, name: str = MODEL_NAME, fmt: str = "no-archive",
          version: str = "1.0") -> Path:
    """Run torch-model-archiver; returns the archive (file or folder) it wrote.

    Raises:
        subprocess.CalledProcessError: the archiver failed (its output went to this process's stderr).
    """
    target = archive_path(store, name, fmt)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdturbo-archive-") as staging_root:
        staging = Path(staging_root) / "extra"
        staging.mkdir()
        (staging / "handler").symlink_to(HANDLER_DIR, target_is_directory=True)
        (staging / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
        command = [
            sys.executable, "-W", "ignore::RuntimeWarning", "-m", "model_archiver.model_packaging",
            "--model-name", name,
            "--version", version,
            "--handler", str(HANDLER_DIR / "torchserve_handler.py"),
            "--config-file", str(config),
            "--extra-files", str(staging),
            "--export-path", str(store),
            "--archive-format", fmt,
            "--force",
        ]
        # The archiver assembles its copy in $TMPDIR/<name>; keep that on the model's disk, not a small /tmp.
        subprocess.run(command, check=True, env={**os.environ, "TMPDIR": staging_root})
    make_world_readable(target)
    return target


def make_world_readable(path: Path) -> None:
    """Add read permission for everyone (and list/enter for folders); never removes a bit.

    Model savers and temp-file writers often leave 0600 files, which a container user other than the
    builder's cannot open.
    """
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for entry in paths:
        if entry.is_symlink():
            continue
        extra = 0o555 if entry.is_dir() else 0o444
        entry.chmod(entry.stat().st_mode | extra)
