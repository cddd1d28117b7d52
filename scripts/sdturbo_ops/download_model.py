"""Fetching the real weights from the Hugging Face Hub: fp16 safetensors only, as the handler loads them."""

from __future__ import annotations

from pathlib import Path

from handler.models import DOWNLOAD_PATTERNS, MODELS, TINY_DECODER_PATTERNS


def download(repo_id: str, out: Path, patterns: tuple[str, ...], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download  # shows a progress bar per file

    return Path(
        snapshot_download(repo_id=repo_id, local_dir=out, allow_patterns=list(patterns), revision=revision)
    )


def download_model(name: str, out: Path, revision: str | None, tiny_decoder: bool) -> str:
    """Download model ``name`` (a key of handler.models.MODELS) into ``out``; returns its repository id."""
    spec = MODELS[name]
    download(spec.repo_id, out, DOWNLOAD_PATTERNS, revision)
    if tiny_decoder:
        download(spec.tiny_decoder_repo, out / "taesd", TINY_DECODER_PATTERNS, None)
    return spec.repo_id
