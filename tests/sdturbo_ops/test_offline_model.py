"""The offline model builder (sdturbo_ops/offline_model.py, scripts/build_offline_model.py): the hub's layout,
SD-turbo's architecture, no silent overwrite."""

from __future__ import annotations

import json


from tests.support.helpers import run_script


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
