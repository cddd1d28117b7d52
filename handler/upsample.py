"""The VAE decoder's upsampling, in 4/9 of the arithmetic: nearest 2x, then a 3x3 convolution, as one 2x2
convolution on the small image.

SD's and SDXL's VAE decoders upsample three times (to 128, 256 and 512 pixels for a 512x512 image) by
repeating every pixel 2x2 and convolving the result with a 3x3 kernel. Each output pixel then reads only
2x2 distinct input pixels (its 3x3 window covers rows i-1..i or i..i+1 of the small image, depending on
whether its row is even or odd; the same for columns), so the 3x3 kernel folds into four 2x2 kernels, one
per output phase (row parity a, column parity b):

    phase a = 0 reads rows (i-1, i) with kernel rows (W[0], W[1] + W[2])
    phase a = 1 reads rows (i, i+1) with kernel rows (W[0] + W[1], W[2])

The four phases run as one 2x2 convolution with four times the output channels on the small image (padded
by one pixel), and are interleaved into the large image afterwards (a pixel shuffle with a one-pixel shift
for odd phases). That is 16 multiply-adds per input channel and output pixel instead of 36: the three
upsampling convolutions are 28 % of the SD VAE decoder's FLOPs, so the decoder does about 15 % fewer. It is
the same function: the folded kernels are sums of the original weights (summed in fp32, then cast back),
so outputs differ only by rounding (tests/handler/test_upsample.py). Measured on an H100 with compiled
kernels (docs/PERFORMANCE.md, round 3): the decoder 8 % faster in slices of 4 images and at batch 1, the
same in slices of 16; eager, the interleave's extra copy makes it 5 % slower.

It replaces ``diffusers.models.upsampling.Upsample2D`` only in its plain form (interpolate, then a 3x3 conv
with padding 1, no norm, no transposed conv), the form SD's and SDXL's VAE decoders use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Which kernel rows (dy = -1, 0, 1) each of a phase's two taps sums: phase 0 -> rows (i-1, i), phase 1 ->
# rows (i, i+1) of the small image.
_FOLD = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                      [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def fold_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 3, 3) kernel as the (4 C_out, C_in, 2, 2) kernel of its four phases, ordered as
    ``pixel_shuffle`` expects: output channel ``o * 4 + a * 2 + b`` is phase (a, b) of channel o."""
    fold = _FOLD.to(weight.device, torch.float32)
    phases = torch.einsum("apy,oiyx,bqx->oabipq", fold, weight.float(), fold)
    return phases.reshape(weight.shape[0] * 4, weight.shape[1], 2, 2).to(weight.dtype)


def supported(module: torch.nn.Module) -> bool:
    """Whether ``module`` is an Upsample2D in the plain form this replaces."""
    conv = getattr(module, "conv", None)
    return (type(module).__name__ == "Upsample2D" and getattr(module, "interpolate", False)
            and getattr(module, "use_conv", False) and not getattr(module, "use_conv_transpose", True)
            and getattr(module, "norm", None) is None and isinstance(conv, torch.nn.Conv2d)
            and conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1)


class SubPixelUpsample(torch.nn.Module):
    """Upsample2D's nearest 2x + 3x3 conv as one 2x2 conv and an interleave (see the module docstring)."""

    def __init__(self, upsample: torch.nn.Module):
        super().__init__()
        if not supported(upsample):
            raise ValueError(f"{type(upsample).__name__} is not a plain nearest-2x + 3x3-conv upsampler")
        conv = upsample.conv
        self.channels = upsample.channels
        self.out_channels = conv.out_channels
        self.original = upsample  # for a call with an explicit output_size (diffusers passes none here)
        self.weight = torch.nn.Parameter(fold_kernel(conv.weight.detach()), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        self.bias = torch.nn.Parameter(bias.repeat_interleave(4), requires_grad=False)

    def forward(self, hidden_states: torch.Tensor, output_size=None, *args, **kwargs) -> torch.Tensor:
        height, width = hidden_states.shape[-2:]
        if output_size is not None and tuple(output_size) != (2 * height, 2 * width):
            return self.original(hidden_states, output_size, *args, **kwargs)
        batch = hidden_states.shape[0]
        phases = F.conv2d(hidden_states, self.weight, self.bias, padding=1)  # (N, 4 C, H + 1, W + 1)
        phases = phases.view(batch, self.out_channels, 2, 2, height + 1, width + 1)
        # Phase (a, b) of output pixel (2i + a, 2j + b) sits at (i + a, j + b) of the padded result.
        rows = [torch.stack([phases[:, :, a, b, a:a + height, b:b + width] for b in (0, 1)], dim=-1)
                for a in (0, 1)]
        upsampled = torch.stack(rows, dim=3)  # (N, C, H, 2, W, 2)
        out = upsampled.reshape(batch, self.out_channels, 2 * height, 2 * width)
        if hidden_states.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out


# The oldest GPU generation the sub-pixel form was measured on, and faster (docs/PERFORMANCE.md, round 3:
# an H100).
MEASURED_FROM = (9, 0)


def use_subpixel(setting: str, compute_capability: tuple[int, int]) -> bool:
    """Whether the ``decoder_upsample`` setting asks for the sub-pixel form on a GPU of this capability:
    "auto" only where it was measured faster, so a GPU it was never run on keeps diffusers' own."""
    if setting == "auto":
        return tuple(compute_capability) >= MEASURED_FROM
    return setting == "subpixel"


def fold_decoder_upsamplers(decoder: torch.nn.Module) -> int:
    """Replace every plain Upsample2D inside ``decoder`` (an AutoencoderKL, or its ``decoder``) by a
    SubPixelUpsample; returns how many were replaced. The folded kernels are computed once, here: call it
    after the weights are loaded and before the decoder changes memory format or is compiled."""
    replaced = 0
    for module in list(decoder.modules()):
        upsamplers = getattr(module, "upsamplers", None)
        if not isinstance(upsamplers, torch.nn.ModuleList):
            continue
        for index, upsampler in enumerate(upsamplers):
            if supported(upsampler):
                upsamplers[index] = SubPixelUpsample(upsampler)
                replaced += 1
    return replaced
