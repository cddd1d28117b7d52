"""A worker under a GPU memory ceiling (``max_gpu_memory_gib``): it keeps serving, and only a request that
cannot fit alone gets 507. On the CPU the ceiling is a stand-in: a pipeline and decoder that run out of
memory when one call holds more pixels than a budget, as a capped CUDA allocator does."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.device import cap_device_memory
from handler.engine import Engine
from handler.schema import parse_request
from handler.settings import load_settings

MEGAPIXEL = 1024 * 1024


def test_the_ceiling_becomes_torchs_per_process_fraction(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=16 * 2**30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    cuda = torch.device("cuda", 0)
    assert cap_device_memory(cuda, 7.5) == pytest.approx(7.5 / 16)
    assert calls == [(pytest.approx(7.5 / 16), cuda)]
    assert cap_device_memory(cuda, 0) is None and cap_device_memory(torch.device("cpu"), 7.5) is None
    assert cap_device_memory(cuda, 64) == 1.0  # a ceiling above the card is the card
    assert len(calls) == 2


class PixelBudget:
    """Raises CUDA's out-of-memory error when one call would hold more than ``budget`` pixels."""

    def __init__(self, budget: int):
        self.budget = budget
        self.calls = []

    def check(self, pixels: int) -> None:
        self.calls.append(pixels)
        if pixels > self.budget:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in for max_gpu_memory_gib)")


@pytest.fixture(scope="module")
def capped_engine(tiny_sd_dir):
    settings = load_settings({"model_dir": tiny_sd_dir.name, "device": "cpu", "warmup": False,
                              "max_gpu_memory_gib": 7.5}, {})
    return Engine.load(tiny_sd_dir.parent, settings)


def limit(engine, monkeypatch, generate_budget, decode_budget):
    """Stand-in device: the pipeline returns latents and the decoder pixels, within pixel budgets."""
    generate, decode = PixelBudget(generate_budget), PixelBudget(decode_budget)

    def pipe(prompt, height, width, output_type, **_):
        generate.check(len(prompt) * height * width)
        return SimpleNamespace(images=torch.zeros(len(prompt), 4, height // 8, width // 8))

    def decode_images(latents):
        count, _, h, w = latents.shape
        decode.check(count * h * w * 64)
        return np.zeros((count, h * 8, w * 8, 3), np.uint8)

    monkeypatch.setattr(engine, "pipe", pipe)
    monkeypatch.setattr(engine.vae, "decode_images", decode_images)


request_mix = st.lists(
    st.tuples(st.sampled_from([512, 1024]), st.sampled_from([512, 1024]), st.integers(1, 4)),
    min_size=1, max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mix=request_mix)
def test_under_the_worst_mix_only_requests_that_cannot_fit_alone_get_507(capped_engine, monkeypatch, mix):
    """Batches of up to 8 requests, up to 4 images each, 512 and 1024 sides mixed (the schema's worst)."""
    generate_budget, decode_budget = 6 * MEGAPIXEL, 3 * MEGAPIXEL
    with monkeypatch.context() as patch:
        limit(capped_engine, patch, generate_budget, decode_budget)
        requests = [parse_request({"prompt": "a cat", "width": w, "height": h, "num_images": n, "seed": i})
                    for i, (w, h, n) in enumerate(mix)]
        replies = capped_engine.serve_batch(requests)
    for request, reply in zip(requests, replies, strict=True):
        fits_alone = request.num_images * request.width * request.height <= min(generate_budget, decode_budget)
        assert reply.status == (200 if fits_alone else 507), (request, reply.body)
        if reply.status == 200:
            assert len(reply.body.get("images", [reply.body["image"]])) == request.num_images
