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


def test_full_architecture_matches_sdxl_turbo():
    """SDXL-turbo's published sizes, built by the builder's own factories on the meta device."""
    import torch

    from sdturbo_ops import offline_model as builder

    factories = builder.build_sdxl("full", 49_408)
    scheduler = factories.pop("scheduler")()  # on the CPU, as the builder makes it: it cannot be made on a device
    with torch.device("meta"):
        parts = {name: make() for name, make in factories.items()}
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
    assert counts["unet"] == 2_567_463_684
    assert counts["text_encoder"] == 123_060_480 and counts["text_encoder_2"] == 694_659_840
    assert counts["vae"] == 83_653_863
    assert parts["vae"].config.scaling_factor == 0.13025 and parts["vae"].config.force_upcast
    assert type(scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    # fp16 files: 2 bytes a parameter, 6.9 GB (6.5 GiB)
    assert 6.9e9 < 2 * sum(counts.values()) < 7.0e9


def test_tiny_sdxl_model_has_the_hub_layout(tiny_sdxl_dir):
    index = json.loads((tiny_sdxl_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        assert list((tiny_sdxl_dir / part).glob("*.fp16.safetensors")), part
    pads = [json.loads((tiny_sdxl_dir / name / "special_tokens_map.json").read_text())["pad_token"]
            for name in ("tokenizer", "tokenizer_2")]
    assert pads == ["<|endoftext|>", "!"]
