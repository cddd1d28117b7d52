"""The sub-pixel upsampler (handler/upsample.py): the same function as diffusers' nearest 2x + 3x3 conv, on
any input, and chosen only where it was measured faster."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.upsampling import Upsample2D

from handler.upsample import SubPixelUpsample, fold_decoder_upsamplers, fold_kernel, supported, use_subpixel


@pytest.mark.parametrize("channels, out_channels, height, width, bias", [
    (8, 8, 5, 7, True), (16, 12, 9, 4, True), (4, 4, 1, 1, False), (8, 8, 16, 16, True)])
def test_it_is_the_same_function_as_nearest_upsampling_then_the_3x3_conv(channels, out_channels, height, width,
                                                                          bias):
    torch.manual_seed(height * width)
    upsample = Upsample2D(channels, use_conv=True, out_channels=out_channels).double()
    if not bias:
        upsample.conv.bias = None
    x = torch.randn(3, channels, height, width, dtype=torch.float64)
    with torch.no_grad():
        expected, folded = upsample(x), SubPixelUpsample(upsample)(x)
    assert folded.shape == expected.shape == (3, out_channels, 2 * height, 2 * width)
    # The folded kernels are summed in fp32 (what fp16 weights get), so fp32 rounding is the difference.
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5)


def test_every_phase_kernel_sums_the_taps_its_window_covers():
    weight = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)  # rows (0 1 2) (3 4 5) (6 7 8)
    phases = fold_kernel(weight).reshape(2, 2, 2, 2)
    # phase (0, 0): rows (i-1 | i) = (W0 | W1+W2), the same for columns
    assert phases[0, 0].tolist() == [[0.0, 1.0 + 2.0], [3.0 + 6.0, 4.0 + 5.0 + 7.0 + 8.0]]
    # phase (1, 1): rows (i | i+1) = (W0+W1 | W2)
    assert phases[1, 1].tolist() == [[0.0 + 1.0 + 3.0 + 4.0, 2.0 + 5.0], [6.0 + 7.0, 8.0]]


def test_channels_last_in_channels_last_out():
    upsample = Upsample2D(8, use_conv=True)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = SubPixelUpsample(upsample)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, upsample(x).detach(), rtol=1e-4, atol=1e-4)


def test_an_explicit_output_size_other_than_2x_runs_the_original():
    upsample = Upsample2D(4, use_conv=True)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(SubPixelUpsample(upsample)(x, output_size=(9, 11)), upsample(x, output_size=(9, 11)))


@pytest.mark.parametrize("module", [
    Upsample2D(4, use_conv=False), Upsample2D(4, use_conv_transpose=True), Upsample2D(4, use_conv=True, kernel_size=5,
                                                                                      padding=2),
    Upsample2D(4, use_conv=True, interpolate=False), torch.nn.Conv2d(4, 4, 3)])
def test_only_the_plain_form_is_replaced(module):
    assert not supported(module)
    with pytest.raises(ValueError, match="plain"):
        SubPixelUpsample(module)


def test_the_vae_decoders_upsamplers_are_folded_and_it_decodes_the_same(tiny_sd_dir):
    from diffusers import AutoencoderKL

    from handler.pipeline import weights_variant

    vae = AutoencoderKL.from_pretrained(str(tiny_sd_dir / "vae"), variant=weights_variant(tiny_sd_dir),
                                        local_files_only=True).eval()
    latents = torch.randn(2, vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = vae.decode(latents).sample
        upsamplers = sum(1 for block in vae.decoder.up_blocks if block.upsamplers is not None)
        assert fold_decoder_upsamplers(vae.decoder) == upsamplers > 0
        assert sum(isinstance(m, SubPixelUpsample) for m in vae.decoder.modules()) == upsamplers
        torch.testing.assert_close(vae.decode(latents).sample, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("setting, capability, expected", [
    ("auto", (9, 0), True), ("auto", (10, 0), True),  # Hopper and newer: measured faster
    ("auto", (7, 5), False), ("auto", (8, 0), False), ("auto", (8, 9), False),  # T4, A100, L4: not measured
    ("subpixel", (7, 5), True), ("nearest", (9, 0), False)])
def test_auto_takes_the_subpixel_form_only_where_it_was_measured(setting, capability, expected):
    assert use_subpixel(setting, capability) is expected
