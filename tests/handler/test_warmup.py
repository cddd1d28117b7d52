"""The warm-up (handler/warmup.py): real requests in both modes before any caller, and the graph sizes kept
to what fits in device memory."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from handler.parse import parse_request
from handler.warmup import warm_up, warmup_image
from tests.support.engines import FakeCapture, PipelineSpy, load_pair, make_engine


@pytest.fixture
def engine(tiny_sd_dir):
    return make_engine(tiny_sd_dir)


@pytest.mark.slow
def test_warmup_runs_a_real_generation(engine, monkeypatch):
    text, image = PipelineSpy(engine.pipe), PipelineSpy(engine.img2img_pipe)
    monkeypatch.setattr(engine, "pipe", text)
    monkeypatch.setattr(engine, "img2img_pipe", image)
    assert warm_up(engine) > 0
    assert text.batches == [1] and image.batches == [1]  # both modes, before any caller


@pytest.mark.slow
def test_warm_up_keeps_the_graph_sizes_that_fit_in_device_memory(tiny_sd_dir, monkeypatch, caplog):
    engine = load_pair(tiny_sd_dir, FakeCapture())[1]
    real = engine.generate

    def generate(jobs):
        if sum(job.request.num_images for job in jobs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        real(jobs)

    monkeypatch.setattr(engine, "generate", generate)
    assert warm_up(engine) > 0
    assert all(graphed.batch_sizes[-1] <= 2 for graphed in engine.graphs)
    assert "a batch of 4 does not fit" in caplog.text
    requests = [parse_request({"prompt": f"a cat {i}", "width": 256, "height": 256}) for i in range(2)]
    assert [reply.status for reply in engine.serve_batch(requests)] == [200, 200]


def test_a_model_that_does_not_fit_at_batch_1_fails_to_load_clearly(tiny_sd_dir, monkeypatch):
    engine = load_pair(tiny_sd_dir, FakeCapture())[1]
    monkeypatch.setattr(engine, "generate", lambda jobs: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")))
    with pytest.raises(RuntimeError, match="does not fit in device memory"):
        warm_up(engine)


def test_the_warm_up_image_is_a_png_of_the_warm_up_size():
    image = Image.open(io.BytesIO(base64.b64decode(warmup_image(256))))
    assert (image.format, image.size, image.mode) == ("PNG", (256, 256), "RGB")
    assert len(set(image.getdata())) > 100  # colour ramps, not a flat image the VAE would find trivial


def test_the_warm_up_drives_the_engine_through_its_surface_only():
    """The warm-up asks the engine whether a batch fits and to limit its batches (Engine.fits,
    Engine.limit_batch) and reads the graphs install_graphs recorded; it never runs the engine's stages
    itself nor reaches into its VAE, whose batch functions the graphs replace."""
    import handler.warmup

    source = Path(handler.warmup.__file__).read_text()
    for reach in ("engine.admit", "engine.generate", "engine.decode", "engine.vae", "encode_chunk", "decode_chunk"):
        assert reach not in source, reach
