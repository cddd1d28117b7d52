"""Build an SD-turbo-shaped (or SDXL-turbo-shaped) diffusers pipeline with random weights, offline.

The Hugging Face Hub is not always reachable (CI, air-gapped GPU boxes). This writes the same folder
layout as the hub repositories (model_index.json, scheduler/, text_encoder/, tokenizer/, unet/, vae/,
fp16 safetensors), so the handler's single loading path serves real and offline models alike.

  --size tiny   a few MB; a 512x512 image takes a fraction of a second on a CPU (tests, demo)
  --size full   the published architecture: SD-turbo (UNet 865.9 M parameters) or SDXL-turbo (UNet
                2.57 B parameters, 6.9 GB of fp16 files): same compute as the real model, so it is what
                the GPU benchmark runs. Its images are noise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from handler.models import WEIGHTS_VARIANT

# Published configs of stabilityai/sd-turbo: its unet/, text_encoder/, vae/ and scheduler/ config files on the
# Hugging Face Hub (as public mirrors copy them); tests/sdturbo_ops/test_offline_model.py holds the built
# model to their parameter counts (UNet 865,910,724; text encoder 340,387,840).
SD_TURBO_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, act_fn="silu",
    norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True, upcast_attention=None, transformer_layers_per_block=1,
)
SD_TURBO_TEXT_ENCODER = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512,
    vocab_size=49408, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
SD_TURBO_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=768,
    scaling_factor=0.18215, force_upcast=True,
)
TURBO_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="epsilon", timestep_spacing="trailing", steps_offset=1,
)
# Published configs of stabilityai/sdxl-turbo: its unet/, text_encoder/, text_encoder_2/, vae/ and scheduler/
# config files, the architecture of stabilityai/stable-diffusion-xl-base-1.0. The hub is not reachable here,
# so the values were checked against what is: the SDXL paper (Podell et al. 2023, arXiv:2307.01952, table 1:
# a 2.6 B-parameter UNet, transformer depths 0/2/10, context 2048 = CLIP ViT-L 768 + OpenCLIP bigG 1280),
# ComfyUI's SDXL unet_config (adm_in_channels 2816 = pooled bigG 1280 + six 256-wide size/crop embeddings),
# and the parameter counts tests/sdturbo_ops/test_offline_model.py holds them to: UNet 2,567,463,684, CLIP ViT-L text
# 123,060,480, OpenCLIP bigG text with projection 694,659,840, VAE 83,653,863 (6.9 GB of fp16 files).
SDXL_TURBO_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), layers_per_block=2, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
    cross_attention_dim=2048, attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True, upcast_attention=None, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)
SDXL_TURBO_TEXT_ENCODER = dict(  # CLIP ViT-L/14's text tower
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
    vocab_size=49408, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
SDXL_TURBO_TEXT_ENCODER_2 = dict(  # OpenCLIP ViT-bigG/14's text tower, with its projection
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1280,
    vocab_size=49408, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
# The SDXL VAE: SD's shape with another latent scale; its fp16 activations overflow, hence force_upcast.
SDXL_TURBO_VAE = dict(SD_TURBO_VAE, sample_size=512, scaling_factor=0.13025)
CLIP_MERGES_FULL = 48_894  # OpenAI CLIP BPE: 512 byte symbols + 48,894 merges + 2 specials = 49,408
CLIP_MERGES_TINY = 400

# Tiny shapes: real classes, few channels. The VAE keeps four blocks (three 2x upsamplers = 8x), so a
# 512x512 request runs the UNet on a 64x64 latent exactly as the real model does.
TINY_VAE = dict(SD_TURBO_VAE, block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8,
                sample_size=512)
TINY_TEXT = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=32,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def clip_bpe(num_merges: int) -> tuple[dict[str, int], list[str]]:
    """A CLIP-format BPE vocabulary: the 512 byte symbols, ``num_merges`` synthetic merges, 2 specials.

    The real merges are not on this machine; with random weights only the vocabulary *size* matters
    (it sizes the embedding), and every prompt is padded to 77 tokens anyway.
    """
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    alphabet = "etaoinshrdlcumwfgypbvkjxqz0123456789"
    merges: list[str] = []
    frontier = list(alphabet)
    while len(merges) < num_merges:
        next_frontier = []
        for left in frontier:
            for right in alphabet:
                for suffix in ("</w>", ""):
                    if len(merges) == num_merges:
                        break
                    merges.append(f"{left} {right}{suffix}")
                    vocab_list.append(left + right + suffix)
                if len(merges) < num_merges:
                    next_frontier.append(left + right)
        frontier = next_frontier
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab_list)}, merges


def write_tokenizer(folder: Path, num_merges: int, pad_token: str) -> int:
    """Write vocab.json/merges.txt/tokenizer_config.json as the hub's CLIP tokenizer folders do."""
    vocab, merges = clip_bpe(num_merges)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def build_sd(size: str, vocab_size: int):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size == "full":
        unet_cfg, text_cfg, vae_cfg = SD_TURBO_UNET, dict(SD_TURBO_TEXT_ENCODER), SD_TURBO_VAE
    else:
        unet_cfg = dict(
            sample_size=64, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
        )
        text_cfg, vae_cfg = dict(TINY_TEXT, vocab_size=vocab_size), TINY_VAE
    return {
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**text_cfg)),
        "unet": lambda: UNet2DConditionModel(**unet_cfg),
        "vae": lambda: AutoencoderKL(**vae_cfg),
        "scheduler": lambda: EulerDiscreteScheduler(**TURBO_SCHEDULER, interpolation_type="linear",
                                                    use_karras_sigmas=False),
    }


def build_sdxl(size: str, vocab_size: int):
    """An SDXL-turbo-shaped pipeline (two text encoders, text-time conditioning), full or tiny."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if size == "full":
        unet_cfg, vae_cfg = SDXL_TURBO_UNET, SDXL_TURBO_VAE
        text_cfg, text_2_cfg = SDXL_TURBO_TEXT_ENCODER, SDXL_TURBO_TEXT_ENCODER_2
    else:
        unet_cfg = dict(
            sample_size=64, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
            addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
            cross_attention_dim=64,
        )
        vae_cfg = dict(TINY_VAE, scaling_factor=SDXL_TURBO_VAE["scaling_factor"])
        text_cfg = text_2_cfg = dict(TINY_TEXT, vocab_size=vocab_size)
    return {
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**text_cfg)),
        "text_encoder_2": lambda: CLIPTextModelWithProjection(CLIPTextConfig(**text_2_cfg)),
        "unet": lambda: UNet2DConditionModel(**unet_cfg),
        "vae": lambda: AutoencoderKL(**vae_cfg),
        "scheduler": lambda: EulerAncestralDiscreteScheduler(**TURBO_SCHEDULER),
    }


def build_tiny_decoder(out: Path, full: bool) -> None:
    """A TAESD-shaped AutoencoderTiny: the real one is madebyollin/taesd (2.4 M parameters)."""
    from diffusers import AutoencoderTiny

    channels = (64, 64, 64, 64) if full else (8, 8, 8, 8)
    decoder = AutoencoderTiny(encoder_block_out_channels=channels, decoder_block_out_channels=channels)
    decoder.half().save_pretrained(out, safe_serialization=True)


def build(arch: str, size: str, out: Path, seed: int, device: str, tiny_decoder: bool,
          on_part: Callable[[str, int, int], object] = lambda name, done, total: None) -> None:
    """Write the model folder ``out`` (replaced atomically), calling ``on_part(name, done, total)`` as
    each component is made: a full-size UNet takes a while."""
    import diffusers
    import torch
    import transformers

    # The caller reports progress; the libraries' per-shard bars and dtype notes are noise here.
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out.parent))
    try:
        num_merges = CLIP_MERGES_FULL if size == "full" else CLIP_MERGES_TINY
        # As in the hub repos: SD-turbo pads with "!"; SDXL-turbo's first tokenizer pads with
        # <|endoftext|> and its second with "!".
        pad_token = "<|endoftext|>" if arch == "sdxl" else "!"
        vocab_size = write_tokenizer(staging / "tokenizer", num_merges, pad_token)
        if arch == "sdxl":
            write_tokenizer(staging / "tokenizer_2", num_merges, pad_token="!")
            factories, pipeline_class = build_sdxl(size, vocab_size), "StableDiffusionXLPipeline"
        else:
            factories, pipeline_class = build_sd(size, vocab_size), "StableDiffusionPipeline"

        index = {"_class_name": pipeline_class, "_diffusers_version": _diffusers_version()}
        for name in ("tokenizer", "tokenizer_2"):
            if (staging / name).exists():
                index[name] = ["transformers", "CLIPTokenizer"]
        for done, (name, factory) in enumerate(factories.items()):
            on_part(name, done, len(factories))
            # Schedulers hold no weights, and some cannot be created under torch.device("cuda") (their
            # tensors must start on the CPU): only the models are made on ``device``.
            with torch.device(device if name != "scheduler" else "cpu"):
                component = factory()
            library = "transformers" if name.startswith("text_encoder") else "diffusers"
            index[name] = [library, type(component).__name__]
            if name == "scheduler":
                component.save_pretrained(staging / name)
                continue
            component.to(dtype=torch.float16).save_pretrained(
                staging / name, variant=WEIGHTS_VARIANT, safe_serialization=True
            )
            del component
        if arch == "sdxl":
            index.update(force_zeros_for_empty_prompt=True, feature_extractor=[None, None],
                         image_encoder=[None, None])
        else:
            index.update(safety_checker=[None, None], feature_extractor=[None, None],
                         image_encoder=[None, None], requires_safety_checker=False)
        (staging / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        write_source(staging, f"{arch}-turbo-{size} (random weights from seed {seed})")
        if tiny_decoder:
            build_tiny_decoder(staging / "taesd", full=size == "full")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_source(model_dir: Path, name: str) -> None:
    """Name the folder's weights for the images' metadata (handler/metadata.py): random weights have no hub
    revision, so the UNet's weights file is hashed, A1111's way (SHA-256 of the file)."""
    from handler.metadata import ModelSource

    digest = hashlib.sha256()
    with (model_dir / "unet" / f"diffusion_pytorch_model.{WEIGHTS_VARIANT}.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    ModelSource(name, weights_sha256=digest.hexdigest()).write(model_dir)


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__

