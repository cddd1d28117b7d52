"""The framework-free engine with the tiny offline model on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handler.engine import Engine
from handler.pipeline import ModelLoadError
from handler.schema import RequestError, parse_request
from handler.settings import load_settings
from tests.helpers import decode_image


def make_engine(model_dir, **settings) -> Engine:
    values = {"model_dir": model_dir.name, "device": "cpu", "warmup": False, **settings}
    return Engine.load(model_dir.parent, load_settings(values, {}))


@pytest.fixture(scope="module")
def engine(tiny_sd_dir):
    return make_engine(tiny_sd_dir)


def req(**fields):
    return parse_request({"prompt": "a cat", **fields})


class PipelineSpy:
    """Counts pipeline calls and the batch each one received."""

    def __init__(self, pipe):
        self.pipe, self.batches = pipe, []

    def __call__(self, **kwargs):
        self.batches.append(len(kwargs["prompt"]))
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def test_reply_is_a_png_of_the_requested_size(engine):
    reply = engine.serve_batch([req(width=256, height=320, seed=5)])[0]
    assert reply.status == 200
    assert set(reply.body) == {"image", "seed", "width", "height", "format"}
    image = decode_image(reply.body["image"])
    assert (image.format, image.size, image.mode) == ("PNG", (256, 320), "RGB")
    assert (reply.body["seed"], reply.body["width"], reply.body["height"]) == (5, 256, 320)


def test_same_shape_requests_run_as_one_pipeline_call(engine, monkeypatch):
    spy = PipelineSpy(engine.pipe)
    monkeypatch.setattr(engine, "pipe", spy)
    replies = engine.serve_batch([req(seed=1), req(seed=2, num_images=2), req(width=256), req(seed=3)])
    assert [r.status for r in replies] == [200] * 4
    assert sorted(spy.batches) == [1, 4]  # 512x512: 1 + 2 + 1 images in one call; 256x512 alone


def test_same_seed_same_bytes(engine):
    first = engine.serve_batch([req(seed=123)])[0]
    second = engine.serve_batch([req(seed=123)])[0]
    assert first.body["image"] == second.body["image"]


def test_seed_reproduces_its_image_whatever_it_is_batched_with(engine):
    alone = engine.serve_batch([req(seed=99)])[0]
    batched = engine.serve_batch([req(prompt="a dog", seed=1), req(seed=99), req(prompt="x", seed=2)])[1]
    alone_px = np.asarray(decode_image(alone.body["image"]), dtype=np.int16)
    batched_px = np.asarray(decode_image(batched.body["image"]), dtype=np.int16)
    # Same noise, same prompt: the image is the same up to float rounding of batched kernels (1/255).
    assert np.abs(alone_px - batched_px).max() <= 1
    other = engine.serve_batch([req(seed=100)])[0]
    assert np.abs(np.asarray(decode_image(other.body["image"]), dtype=np.int16) - alone_px).mean() > 10


def test_missing_seed_is_drawn_and_returned(engine):
    replies = engine.serve_batch([req(), req()])
    seeds = [r.body["seed"] for r in replies]
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds) and seeds[0] != seeds[1]
    replay = engine.serve_batch([req(seed=seeds[0])])[0]
    assert replay.body["image"] == engine.serve_batch([req(seed=seeds[0])])[0].body["image"]


def test_several_images_come_as_a_list(engine):
    reply = engine.serve_batch([req(num_images=3, seed=4)])[0]
    assert len(reply.body["images"]) == 3 and reply.body["image"] == reply.body["images"][0]
    assert len(set(reply.body["images"])) == 3  # one generator, three different noise draws


@pytest.mark.parametrize("fmt, pil_format", [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_output_formats(engine, fmt, pil_format):
    reply = engine.serve_batch([req(output_format=fmt, seed=1)])[0]
    assert decode_image(reply.body["image"]).format == pil_format
    assert reply.body["format"] == fmt


def test_bad_request_in_a_batch_does_not_hurt_the_others(engine):
    bad = RequestError(400, "invalid request: prompt: empty", [{"field": "prompt", "message": "empty"}])
    replies = engine.serve_batch([req(seed=1), bad, req(seed=2)])
    assert [r.status for r in replies] == [200, 400, 200]
    assert replies[1].body["errors"][0]["field"] == "prompt"


def test_out_of_memory_is_507_for_that_group_only(engine, monkeypatch):
    real_generate = engine.generate

    def generate(requests, seeds):
        if requests[0].width == 1024:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_generate(requests, seeds)

    monkeypatch.setattr(engine, "generate", generate)
    replies = engine.serve_batch([req(width=1024, height=1024), req(seed=1)])
    assert [r.status for r in replies] == [507, 200]
    assert replies[0].body["type"] == "OutOfMemory"


def test_unexpected_failure_is_500_without_internals(engine, monkeypatch):
    monkeypatch.setattr(engine, "generate", lambda *a: (_ for _ in ()).throw(RuntimeError("secret path /x")))
    reply = engine.serve_batch([req()])[0]
    assert reply.status == 500 and "secret" not in reply.body["message"]


def test_warmup_runs_a_real_generation(engine):
    assert engine.warmup() > 0


def test_sdxl_turbo_is_served_by_the_same_engine(tiny_sdxl_dir):
    sdxl = make_engine(tiny_sdxl_dir)
    assert type(sdxl.pipe).__name__ == "StableDiffusionXLPipeline"
    replies = sdxl.serve_batch([req(seed=1), req(seed=1), req(seed=2, width=256)])
    assert [r.status for r in replies] == [200] * 3
    assert replies[0].body["image"] == replies[1].body["image"]
    assert decode_image(replies[2].body["image"]).size == (256, 512)


def test_tiny_decoder_mode(tiny_sd_dir):
    fast = make_engine(tiny_sd_dir, decoder="tiny")
    assert type(fast.decoder).__name__ == "AutoencoderTiny"
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


def test_freed_memory_is_returned_after_each_batch(engine, monkeypatch):
    import handler.engine as engine_module
    from handler.memory import release_free_memory

    calls = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: calls.append(1))
    engine.serve_batch([req(seed=1)])
    assert calls == [1]
    assert release_free_memory() in (True, False)  # a no-op where the C library has no malloc_trim
