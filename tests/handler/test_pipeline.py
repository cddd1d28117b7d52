"""Loading a model (handler/pipeline.py): offline and safetensors-only, the tiny decoder, and the image-to-image
pipeline made of the text-to-image one's own objects."""

from __future__ import annotations

import pytest
import torch

from handler.pipeline import ModelLoadError
from tests.support.helpers import decode_image
from tests.support.engines import make_engine, req


@pytest.fixture(scope="module")
def engine(tiny_sd_dir):
    return make_engine(tiny_sd_dir)


def test_one_copy_of_the_weights(engine):
    """The image-to-image pipeline is made of the text-to-image pipeline's own objects."""
    text, image = engine.pipe.components, engine.img2img_pipe.components
    shared = [name for name, component in text.items() if isinstance(component, torch.nn.Module)]
    assert {"unet", "vae", "text_encoder"} <= set(shared)
    assert all(image[name] is text[name] for name in shared)
    assert image["scheduler"] is text["scheduler"]
    pointers = {p.data_ptr() for name in shared for p in text[name].parameters()}
    assert pointers == {p.data_ptr() for name in shared for p in image[name].parameters()}


def test_tiny_decoder_mode(tiny_sd_dir):
    fast = make_engine(tiny_sd_dir, decoder="tiny")
    assert type(fast.vae.decoder).__name__ == "AutoencoderTiny"
    assert decode_image(fast.serve_batch([req(seed=1)])[0].body["image"]).size == (512, 512)


def test_missing_model_fails_with_an_actionable_message(tmp_path):
    with pytest.raises(ModelLoadError, match="make model"):
        make_engine(tmp_path / "nothing")


def test_pickle_weights_are_refused(tmp_path, tiny_sd_dir):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, copy)
    for weights in (copy / "unet").glob("*.safetensors"):
        weights.unlink()
    (copy / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="pickle"):
        make_engine(copy)


def test_an_fp16_fix_vae_in_the_model_folder_replaces_vae_and_decodes_in_fp16(tmp_path, tiny_sdxl_dir):
    """madebyollin/sdxl-vae-fp16-fix's shape: SDXL's VAE, other weights, meant for fp16. Without it SDXL's
    VAE is upcast to fp32 (force_upcast)."""
    import shutil

    from diffusers import AutoencoderKL

    from handler.pipeline import load_pipeline, needs_fp32_vae

    model = shutil.copytree(tiny_sdxl_dir, tmp_path / "model")
    torch.manual_seed(7)
    fixed = AutoencoderKL.from_config(AutoencoderKL.load_config(str(model / "vae")))
    fixed.save_pretrained(model / "vae-fp16-fix", safe_serialization=True)

    plain = load_pipeline(model, torch.device("cpu"), torch.float16)
    assert needs_fp32_vae(plain, torch.float16) and plain.vae.dtype == torch.float32
    served = load_pipeline(model, torch.device("cpu"), torch.float16, model / "vae-fp16-fix")
    assert not served.vae.config.force_upcast and served.vae.dtype == torch.float16
    weight = "decoder.conv_out.weight"
    assert torch.equal(served.vae.state_dict()[weight], fixed.state_dict()[weight].half())
    missing = load_pipeline(model, torch.device("cpu"), torch.float16, model / "no-such-folder")
    assert missing.vae.dtype == torch.float32  # a folder that is not there changes nothing
