"""Fetching the real weights from the Hugging Face Hub: fp16 safetensors only, as the handler loads them."""

from __future__ import annotations

from pathlib import Path

from handler.models import DOWNLOAD_PATTERNS, MODELS, SINGLE_MODEL_PATTERNS


def download(repo_id: str, out: Path, patterns: tuple[str, ...], revision: str | None) -> str:
    """Fetch ``repo_id`` at ``revision`` (a branch, tag or commit; None: main) into ``out``; returns the
    commit it fetched, resolved first so that every file comes from that one commit."""
    from huggingface_hub import HfApi, snapshot_download  # shows a progress bar per file

    commit = HfApi().model_info(repo_id, revision=revision).sha
    snapshot_download(repo_id=repo_id, local_dir=out, allow_patterns=list(patterns), revision=commit)
    return commit


class NoFp16FixVae(ValueError):
    """The model decodes in fp16 as it is: there is no fp16-fix VAE to fetch for it."""


def download_model(name: str, out: Path, revision: str | None, tiny_decoder: bool, fp16_fix_vae: bool = False,
                   fetch=download, announce=lambda line: None) -> str:
    """Download model ``name`` (a key of handler.models.MODELS) into ``out``, with the tiny decoder in
    ``out/taesd`` and the fp16-fix VAE in ``out/vae-fp16-fix`` (where the engine looks for them by
    default) when asked, announcing each repository before it is fetched, and name the model's repository
    and commit in ``out``'s source file, which the images' metadata reads (handler/metadata.py); returns
    its repository id.

    Raises:
        NoFp16FixVae: ``fp16_fix_vae`` for a model that has none (checked before anything is fetched).
    """
    from handler.metadata import ModelSource
    from handler.settings import EngineSettings

    spec = MODELS[name]
    if fp16_fix_vae and spec.fp16_fix_vae_repo is None:
        raise NoFp16FixVae(f"{name}'s own VAE decodes in fp16; the fp16-fix VAE is for sdxl-turbo")
    defaults = EngineSettings()
    plan = [(spec.repo_id, out, DOWNLOAD_PATTERNS, revision, f"{name} (fp16 safetensors)")]
    if tiny_decoder:
        plan.append((spec.tiny_decoder_repo, out / defaults.tiny_decoder_dir, SINGLE_MODEL_PATTERNS, None,
                     "the tiny decoder (TAESD, for decoder: tiny)"))
    if fp16_fix_vae:
        plan.append((spec.fp16_fix_vae_repo, out / defaults.fp16_fix_vae_dir, SINGLE_MODEL_PATTERNS, None,
                     "the fp16-fix VAE"))
    for step, (repo_id, folder, patterns, pinned, what) in enumerate(plan, 1):
        announce(f"{step}/{len(plan)}: {what}, {repo_id} into {folder}")
        commit = fetch(repo_id, folder, patterns, pinned)
        if folder == out:  # the model itself, which the images name
            ModelSource(repo_id, revision=commit).write(out)
    return spec.repo_id
