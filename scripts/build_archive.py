#!/usr/bin/env python3
"""Package the handler, its model-config.yaml and a diffusers model folder into a TorchServe archive.

The archive root gets ``torchserve_handler.py`` (TorchServe's entry point), the ``handler/`` package it
imports, ``model-config.yaml`` and the weights under ``model/``. torch-model-archiver flattens the
folders given to ``--extra-files`` into the root, so we hand it a staging folder of symlinks that holds
exactly ``handler/`` and ``model/`` (it copies through the links).

Formats: ``no-archive`` (a folder, the default: no unzip at start, measured in the README),
``zip-store`` (an uncompressed .mar) and ``default`` (a deflated .mar).

Whatever the source files' modes, the archive is world-readable: the container runs as a non-root user
and must read it when it is mounted at /opt/ml/model.

Exit codes: 0 built, 1 archiver failed, 2 bad arguments, 3 the model folder is not usable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDLER_PACKAGE = REPO / "handler"
DEFAULT_CONFIG = HANDLER_PACKAGE / "model-config.yaml"
FORMATS = ("no-archive", "zip-store", "default")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BAD_MODEL = 0, 1, 2, 3


def archive_path(store: Path, name: str, fmt: str) -> Path:
    return store / name if fmt == "no-archive" else store / f"{name}.mar"


def build(model_dir: Path, store: Path, name: str, fmt: str, config: Path, version: str) -> Path:
    """Run torch-model-archiver; returns the archive (file or folder) it wrote."""
    target = archive_path(store, name, fmt)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdturbo-archive-") as staging_root:
        staging = Path(staging_root) / "extra"
        staging.mkdir()
        (staging / "handler").symlink_to(HANDLER_PACKAGE, target_is_directory=True)
        (staging / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
        command = [
            sys.executable, "-W", "ignore::RuntimeWarning", "-m", "model_archiver.model_packaging",
            "--model-name", name,
            "--version", version,
            "--handler", str(HANDLER_PACKAGE / "torchserve_handler.py"),
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


def write_config(source: Path, target: Path, overrides: dict | None = None,
                 handler_overrides: dict | None = None) -> Path:
    """Copy model-config.yaml to ``target`` with top-level keys and ``handler:`` keys overridden."""
    import yaml

    values = yaml.safe_load(source.read_text())
    values.update(overrides or {})
    values.setdefault("handler", {}).update(handler_overrides or {})
    target.write_text(yaml.safe_dump(values, sort_keys=False))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="diffusers folder (has model_index.json)")
    parser.add_argument("--store", type=Path, default=REPO / "model-store", help="model store (default: model-store/)")
    parser.add_argument("--name", default="sdturbo", help="model name in URLs (default: sdturbo)")
    parser.add_argument("--format", choices=FORMATS, default="no-archive", help="archive format (default: no-archive)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="model-config.yaml to ship")
    parser.add_argument("--version", default="1.0", help="archive version (default: 1.0)")
    parser.add_argument("--workers", type=int, help="override minWorkers/maxWorkers of the config (2 on a GPU)")
    args = parser.parse_args(argv)

    if not (args.model_dir / "model_index.json").is_file():
        print(f"error: {args.model_dir} has no model_index.json; run `make model` or `make tiny-model`",
              file=sys.stderr)
        return EXIT_BAD_MODEL
    if not args.config.is_file():
        print(f"error: {args.config} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="sdturbo-config-") as scratch:
        config = args.config
        if args.workers is not None:
            workers = {"minWorkers": args.workers, "maxWorkers": args.workers}
            config = write_config(args.config, Path(scratch) / "model-config.yaml", workers)
        try:
            target = build(args.model_dir, args.store, args.name, args.format, config, args.version)
        except subprocess.CalledProcessError as exc:
            print(f"error: torch-model-archiver failed with exit code {exc.returncode}", file=sys.stderr)
            return EXIT_FAILED
    print(f"wrote {target}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
