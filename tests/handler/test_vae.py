"""The engine's VAE work (handler/vae.py): the copies of diffusers' pre- and post-processing, pinned to the
pipelines' own output, and the slices it runs in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handler.pipeline import ModelLoadError
from handler.settings import EngineSettings
from handler.vae import Vae
from tests.support.helpers import decode_image
from tests.support.engines import image_req, make_engine
from tests.support.images import b64, encode, picture


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["tiny_sd_dir", "tiny_sdxl_dir"])
def test_decode_matches_the_pipelines_own_postprocessing(fixture, request):
    """Vae.decode_images re-implements diffusers' latent un-scaling and [-1, 1] -> uint8 on the device: it must
    give exactly what the pipeline's ``output_type="np"`` path gives, rounded as diffusers rounds."""
    engine = make_engine(request.getfixturevalue(fixture))
    common = {"prompt": ["a red cube", "a blue ball"], "num_inference_steps": 1, "guidance_scale": 0.0,
              "height": 256, "width": 256}
    reference = engine.pipe(**common, generator=[torch.Generator().manual_seed(s) for s in (1, 2)],
                            output_type="np").images
    latents = engine.pipe(**common, generator=[torch.Generator().manual_seed(s) for s in (1, 2)],
                          output_type="latent").images
    ours = np.stack(list(engine.vae.decode_images(latents)))
    expected = (reference * 255).round().astype(np.uint8)
    assert ours.dtype == np.uint8 and ours.shape == expected.shape == (2, 256, 256, 3)
    assert np.array_equal(ours, expected)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["tiny_sd_dir", "tiny_sdxl_dir"])
def test_image_latents_match_the_pipelines_own_image_path(fixture, request):
    """Vae.image_latents re-implements the pipelines' VAE encoding, sampling and scaling so the encoder can
    run batched through a CUDA graph: from the same pixels and seeds, the pipeline must end at exactly
    the latents its own PIL-image path gives."""
    engine = make_engine(request.getfixturevalue(fixture))
    job_request = image_req(num_images=2)
    common = {"prompt": ["a cat"] * 2, "num_inference_steps": 2, "strength": 0.5, "guidance_scale": 0.0,
              "output_type": "latent"}
    pil = decode_image(b64(encode(picture(320, 256))))
    reference = engine.img2img_pipe(**common, image=[pil, pil], generator=[torch.Generator().manual_seed(s)
                                                                           for s in (3, 4)]).images
    generators = [torch.Generator().manual_seed(s) for s in (3, 4)]
    latents = engine.vae.image_latents([job_request.init_image.pixels], [job_request.num_images], generators)
    ours = engine.img2img_pipe(**common, image=latents, generator=generators).images
    assert ours.shape == reference.shape == (2, 4, 32, 40)
    assert torch.equal(ours, reference)



@pytest.mark.parametrize("vae_decode_batch, side, images", [(4, 512, 4), (4, 1024, 1), (4, 256, 16), (1, 2048, 1),
                                                             (8, 768, 3)])
def test_slices_are_counted_in_512x512_images(vae_decode_batch, side, images):
    vae = Vae(FakeVae(), FakeVae(), torch.device("cpu"), torch.float32, EngineSettings(vae_decode_batch=vae_decode_batch))
    assert vae.slice_size((side // 8) ** 2) == images


@pytest.mark.slow
def test_decoding_runs_in_slices_and_keeps_the_order(tiny_sd_dir):
    engine = make_engine(tiny_sd_dir, vae_decode_batch=2)
    seen, real = [], engine.vae.decode_chunk
    engine.vae.decode_chunk = lambda inputs: seen.append(inputs["latents"].shape[0]) or real(inputs)
    latents = torch.randn(5, 4, 64, 64, generator=torch.Generator().manual_seed(0))  # 512x512 images
    sliced = list(engine.vae.decode_images(latents))
    assert seen == [2, 2, 1]
    alone = [next(engine.vae.decode_images(latent[None])) for latent in latents]
    assert [image.shape for image in sliced] == [(512, 512, 3)] * 5
    for one, other in zip(sliced, alone, strict=True):
        assert np.abs(one.astype(int) - other.astype(int)).max() <= 1  # batch size may change rounding


class FakeVae:
    """A VAE stand-in with only a config."""

    def __init__(self, **config):
        self.config = type("Config", (), {"scaling_factor": 0.18215, **config})()


def test_a_vae_with_latent_statistics_is_refused_at_load():
    """The copied scaling has no latents_mean/latents_std (neither served VAE has them): such a VAE must fail
    the load rather than give wrong images."""
    with pytest.raises(ModelLoadError, match="latents_mean"):
        Vae(FakeVae(latents_mean=[0.0] * 4, latents_std=[1.0] * 4), FakeVae(), torch.device("cpu"), torch.float32,
            EngineSettings())


# ------------------------------------------------------------------ fp16 overflow: decoded again in fp32
class OverflowingDecoder(torch.nn.Module):
    """A stand-in for SDXL's VAE decoding in fp16: its activations pass 65504 (fp16's largest value), so in
    fp16 they become inf and then NaN, while in fp32 the same decode is finite (its gain itself fits in fp16). Its images are the latents'
    first three channels, squashed to [-1, 1] and scaled up 8x, as a VAE's are."""

    def __init__(self, activation: float = 40_000.0):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(activation))
        self.config = SimpleNamespace(scaling_factor=1.0, latents_mean=None)

    @property
    def dtype(self) -> torch.dtype:
        return self.gain.dtype

    def decode(self, latents: torch.Tensor, return_dict: bool = False):
        big = latents[:, :3] * self.gain  # inf in fp16 where |latent| * gain > 65504
        images = torch.tanh(latents[:, :3]) + (big - big)  # inf - inf: NaN in fp16; exactly 0 in fp32
        return (images.repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1),)


def overflow_vae(guard: bool, activation: float = 40_000.0) -> Vae:
    decoder = OverflowingDecoder(activation).to(torch.float16)
    return Vae(decoder, decoder, torch.device("cpu"), torch.float16, EngineSettings(vae_decode_batch=2),
               guard_overflow=guard)


@pytest.mark.slow
def test_an_fp16_decode_that_overflows_is_decoded_again_in_fp32_not_returned_black():
    latents = torch.linspace(-2, 2, 3 * 4 * 64 * 64).reshape(3, 4, 64, 64).to(torch.float16)
    expected = np.stack(list(overflow_vae(guard=False, activation=1.0).decode_images(latents)))
    assert expected.std() > 10  # the stand-in's images are pictures, not a flat colour

    vae = overflow_vae(guard=True)
    images = np.stack(list(vae.decode_images(latents)))
    assert images.shape == (3, 512, 512, 3) and vae.fp32_redecodes == 2  # slices of 2 and 1 images
    assert images.std() > 10 and np.abs(images.astype(int) - expected).max() <= 1  # fp32 vs fp16 rounding
    assert vae.decoder.dtype == torch.float16  # the fallback used a copy: graphs keep the weights they hold


def test_the_guard_changes_nothing_for_a_decode_that_stays_finite():
    latents = torch.linspace(-2, 2, 3 * 4 * 64 * 64).reshape(3, 4, 64, 64).to(torch.float16)
    guarded, plain = overflow_vae(guard=True, activation=1.0), overflow_vae(guard=False, activation=1.0)
    assert np.array_equal(np.stack(list(guarded.decode_images(latents))), np.stack(list(plain.decode_images(latents))))
    assert guarded.fp32_redecodes == 0


def test_only_an_sdxl_vae_decoding_in_fp16_is_guarded(tiny_sd_dir, tiny_sdxl_dir):
    from handler.pipeline import decodes_sdxl_in_fp16, load_pipeline

    sdxl = load_pipeline(tiny_sdxl_dir, torch.device("cpu"), torch.float16)
    assert sdxl.vae.dtype == torch.float32 and not decodes_sdxl_in_fp16(sdxl)  # upcast: nothing to guard
    sdxl.vae.to(torch.float16)
    assert decodes_sdxl_in_fp16(sdxl)
    sd = load_pipeline(tiny_sd_dir, torch.device("cpu"), torch.float16)
    assert sd.vae.dtype == torch.float16 and not decodes_sdxl_in_fp16(sd)  # SD's VAE is fp16-safe
