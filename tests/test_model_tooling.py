"""The model CLIs: offline builder, hub download, archiver wrapper."""

from __future__ import annotations

import json

import pytest

from tests.helpers import REPO, run_script


@pytest.mark.parametrize("script", ["build_offline_model.py", "download_model.py", "build_archive.py",
                                    "wait_ready.py", "serve.py"])
def test_cli_has_help(script):
    result = run_script(script, "--help")
    assert result.returncode == 0 and "usage" in result.stdout.lower()


def test_tiny_model_has_the_hub_layout(tiny_sd_dir):
    index = json.loads((tiny_sd_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    for part in ("unet", "vae", "text_encoder"):
        assert list((tiny_sd_dir / part).glob("*.fp16.safetensors")), part
    scheduler = json.loads((tiny_sd_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["timestep_spacing"] == "trailing" and scheduler["_class_name"] == "EulerDiscreteScheduler"
    assert json.loads((tiny_sd_dir / "tokenizer" / "special_tokens_map.json").read_text())["pad_token"] == "!"
    vae = json.loads((tiny_sd_dir / "vae" / "config.json").read_text())
    assert len(vae["up_block_types"]) == 4  # three 2x upsamplers: the real 8x latent scale
    total = sum(f.stat().st_size for f in tiny_sd_dir.rglob("*") if f.is_file())
    assert total < 20 * 2**20


def test_full_architecture_matches_sd_turbo():
    """The full-size configs, instantiated on the meta device (no memory), have SD-turbo's sizes."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdturbo_ops import offline_model as builder

    with torch.device("meta"):
        unet = UNet2DConditionModel(**builder.SD_TURBO_UNET)
        text = CLIPTextModel(CLIPTextConfig(**builder.SD_TURBO_TEXT_ENCODER))
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724
    assert sum(p.numel() for p in text.parameters()) == 340_387_840
    vocab, merges = builder.clip_bpe(builder.CLIP_MERGES_FULL)
    assert len(vocab) == 49_408 and len(merges) == 48_894


def test_builder_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    assert run_script("build_offline_model.py", "--out", str(tmp_path / "out")).returncode == 3


def test_download_fails_cleanly_without_the_hub(tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = run_script("download_model.py", "--out", str(tmp_path / "m"), env=env)
    assert result.returncode == 1
    assert "error: download of stabilityai/sd-turbo failed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt, expected", [("no-archive", "sdturbo"), ("zip-store", "sdturbo.mar")])
def test_archive_holds_handler_config_and_weights(tmp_path, tiny_sd_dir, fmt, expected):
    import zipfile

    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    target = tmp_path / expected
    if fmt == "no-archive":
        names = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    else:
        names = set(zipfile.ZipFile(target).namelist())
    for required in ("MAR-INF/MANIFEST.json", "torchserve_handler.py", "model-config.yaml",
                     "handler/engine.py", "model/model_index.json"):
        assert required in names, (required, sorted(names)[:20])
    assert any(n.startswith("model/unet/") and n.endswith(".safetensors") for n in names)


def test_archive_of_a_missing_model_exits_3(tmp_path):
    assert run_script("build_archive.py", "--model-dir", str(tmp_path), "--store", str(tmp_path)).returncode == 3


def test_archive_workers_override(tmp_path, tiny_sd_dir):
    import yaml

    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--workers", "2")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "sdturbo" / "model-config.yaml").read_text())
    assert config["minWorkers"] == config["maxWorkers"] == 2
    shipped = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())
    rest = lambda values: {k: v for k, v in values.items() if k not in ("minWorkers", "maxWorkers")}  # noqa: E731
    assert rest(config) == rest(shipped)  # the rest of the shipped config is kept


@pytest.mark.parametrize("fmt, expected", [("no-archive", "sdturbo"), ("zip-store", "sdturbo.mar")])
def test_archive_is_readable_by_every_user(tmp_path, tiny_sd_dir, fmt, expected):
    # The model builder leaves 0600 weights; the container's uid 1000 must still read what it is given.
    assert any(not p.stat().st_mode & 0o004 for p in tiny_sd_dir.rglob("*.safetensors")), "nothing to prove"
    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    target = tmp_path / expected
    for path in [target, *target.rglob("*")]:
        wanted = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & wanted == wanted, f"{path}: {path.stat().st_mode:o}"
