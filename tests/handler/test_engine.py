"""The framework-free engine with the tiny offline model on CPU."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.engine import Engine
from handler.parse import parse_request
from handler.settings import load_settings
from tests.support.engines import PipelineSpy, image_req, make_engine, req
from tests.support.helpers import decode_image
from tests.support.images import b64, encode, picture


@pytest.fixture(scope="module")
def engine(tiny_sd_dir):
    return make_engine(tiny_sd_dir)


def pixels_of(reply) -> np.ndarray:
    return np.asarray(decode_image(reply.body["image"]), dtype=np.int16)


class OutOfMemoryAbove:
    """A pipeline (or decoder) stand-in that runs out of memory for calls of more than ``limit`` images."""

    def __init__(self, real, limit: int, error=None):
        self.real, self.limit, self.calls = real, limit, []
        self.error = error or torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def __call__(self, images, *args, **kwargs):
        self.calls.append(images)
        if images > self.limit:
            raise self.error
        return self.real(*args, **kwargs)


def failing_pipe(engine, monkeypatch, limit, error=None):
    real = engine.pipe
    guard = OutOfMemoryAbove(lambda **kw: real(**kw), limit, error)
    monkeypatch.setattr(engine, "pipe", lambda **kw: guard(len(kw["prompt"]), **kw))
    return guard


# A worker under a GPU memory ceiling (``max_gpu_memory_gib``): it keeps serving, and only a request that
# cannot fit alone gets 507. On the CPU the ceiling is a stand-in: a pipeline and decoder that run out of
# memory when one call holds more pixels than a budget, as a capped CUDA allocator does.
MEGAPIXEL = 1024 * 1024


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


def test_reply_is_a_png_of_the_requested_size(engine):
    reply = engine.serve_batch([req(width=256, height=320, seed=5)])[0]
    assert reply.status == 200
    assert set(reply.body) == {"image", "seed", "width", "height", "format"}
    image = decode_image(reply.body["image"])
    assert (image.format, image.size, image.mode) == ("PNG", (256, 320), "RGB")
    assert (reply.body["seed"], reply.body["width"], reply.body["height"]) == (5, 256, 320)


@pytest.mark.slow
def test_same_shape_requests_run_as_one_pipeline_call(engine, monkeypatch):
    spy = PipelineSpy(engine.pipe)
    monkeypatch.setattr(engine, "pipe", spy)
    replies = engine.serve_batch([req(seed=1), req(seed=2, num_images=2), req(width=256), req(seed=3)])
    assert [r.status for r in replies] == [200] * 4
    assert sorted(spy.batches) == [1, 4]  # 512x512: 1 + 2 + 1 images in one call; 256x512 alone


@pytest.mark.slow
def test_same_seed_same_bytes(engine):
    first = engine.serve_batch([req(seed=123)])[0]
    second = engine.serve_batch([req(seed=123)])[0]
    assert first.body["image"] == second.body["image"]


@pytest.mark.slow
def test_seed_reproduces_its_image_whatever_it_is_batched_with(engine):
    alone = engine.serve_batch([req(seed=99)])[0]
    batched = engine.serve_batch([req(prompt="a dog", seed=1), req(seed=99), req(prompt="x", seed=2)])[1]
    alone_px = np.asarray(decode_image(alone.body["image"]), dtype=np.int16)
    batched_px = np.asarray(decode_image(batched.body["image"]), dtype=np.int16)
    # Same noise, same prompt: the image is the same up to float rounding of batched kernels (1/255).
    assert np.abs(alone_px - batched_px).max() <= 1
    other = engine.serve_batch([req(seed=100)])[0]
    assert np.abs(np.asarray(decode_image(other.body["image"]), dtype=np.int16) - alone_px).mean() > 10


@pytest.mark.slow
def test_missing_seed_is_drawn_and_returned(engine):
    replies = engine.serve_batch([req(), req()])
    seeds = [r.body["seed"] for r in replies]
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds) and seeds[0] != seeds[1]
    replay = engine.serve_batch([req(seed=seeds[0])])[0]
    assert replay.body["image"] == engine.serve_batch([req(seed=seeds[0])])[0].body["image"]


@pytest.mark.slow
def test_several_images_come_as_a_list(engine):
    reply = engine.serve_batch([req(num_images=3, seed=4)])[0]
    assert len(reply.body["images"]) == 3 and reply.body["image"] == reply.body["images"][0]
    assert len(set(reply.body["images"])) == 3  # one generator, three different noise draws


@pytest.mark.slow
@pytest.mark.parametrize("fmt, pil_format", [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_output_formats(engine, fmt, pil_format):
    reply = engine.serve_batch([req(output_format=fmt, seed=1)])[0]
    assert decode_image(reply.body["image"]).format == pil_format
    assert reply.body["format"] == fmt


@pytest.mark.slow
def test_out_of_memory_retries_in_halves_and_answers_507_only_to_the_request_that_cannot_fit(engine, monkeypatch):
    guard = failing_pipe(engine, monkeypatch, limit=3)
    replies = engine.serve_batch([req(seed=1), req(seed=2), req(seed=3), req(seed=4, num_images=4)])
    assert [r.status for r in replies] == [200, 200, 200, 507]
    assert replies[3].body["type"] == "OutOfMemory" and "alone" in replies[3].body["message"]
    assert guard.calls == [7, 2, 5, 1, 4]  # all, first half, second half, then each of the second half


@pytest.mark.slow
def test_a_request_that_fits_after_the_split_gets_the_image_it_would_get_alone(engine, monkeypatch):
    alone = engine.serve_batch([req(seed=7)])[0]
    failing_pipe(engine, monkeypatch, limit=1)
    split = engine.serve_batch([req(seed=7), req(seed=8)])
    assert [r.status for r in split] == [200, 200]
    # Its own noise and prompt: equal up to the rounding of batched kernels (it was decoded with its peer).
    difference = np.asarray(decode_image(split[0].body["image"]), dtype=np.int16) - np.asarray(
        decode_image(alone.body["image"]), dtype=np.int16)
    assert np.abs(difference).max() <= 1


@pytest.mark.slow
def test_out_of_memory_while_decoding_is_isolated_the_same_way(engine, monkeypatch):
    real = engine.vae.decode_images
    guard = OutOfMemoryAbove(real, limit=2)
    monkeypatch.setattr(engine.vae, "decode_images", lambda latents: guard(latents.shape[0], latents))
    replies = engine.serve_batch([req(seed=1), req(seed=2, num_images=3)])
    assert [r.status for r in replies] == [200, 507]
    assert guard.calls == [4, 1, 3]


def test_mps_out_of_memory_is_507_like_cuda(engine, monkeypatch):
    failing_pipe(engine, monkeypatch, limit=0, error=RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert engine.serve_batch([req()])[0].status == 507


@pytest.mark.slow
def test_unexpected_failure_is_500_for_its_group_only_and_without_internals(engine, monkeypatch):
    real = engine.pipe

    def pipe(**kwargs):
        if kwargs["width"] == 256:
            raise RuntimeError("secret path /x")
        return real(**kwargs)

    monkeypatch.setattr(engine, "pipe", pipe)
    replies = engine.serve_batch([req(width=256), req(seed=1), req(width=256, seed=2)])
    assert [r.status for r in replies] == [500, 200, 500]
    assert "secret" not in replies[0].body["message"] and replies[0].body["message"].startswith("image generation")


def test_an_image_that_fails_to_encode_costs_only_its_own_request(engine, monkeypatch):
    real = engine.image_encoder.encode_one

    def encode_one(pixels, fmt, parts=1, text=None):
        if fmt == "webp":
            raise OSError("encoder crashed")
        return real(pixels, fmt, parts, text)

    monkeypatch.setattr(engine.image_encoder, "encode_one", encode_one)
    replies = engine.serve_batch([req(seed=1), req(seed=2, output_format="webp"), req(seed=3, num_images=2)])
    assert [r.status for r in replies] == [200, 500, 200]
    assert replies[1].body["message"] == "image encoding failed; see server logs"
    assert len(replies[2].body["images"]) == 2


@pytest.mark.slow
def test_encoding_starts_while_later_slices_are_still_decoding(engine, monkeypatch):
    """Each image goes to the encoder as soon as its slice reaches the host: the second slice is still
    being decoded (this stand-in decoder waits for it) when the first slice's images are being encoded."""
    real_decode, real_encode = engine.vae.decode_images, engine.image_encoder.encode_one
    first_encode_started = threading.Event()
    overlapped = []

    def decode_images(latents):
        images = list(real_decode(latents))
        yield from images[:2]  # the first slice has landed ...
        overlapped.append(first_encode_started.wait(timeout=10))  # ... the device works on the next
        yield from images[2:]

    def encode_one(pixels, fmt, parts=1, text=None):
        first_encode_started.set()
        return real_encode(pixels, fmt, parts, text)

    monkeypatch.setattr(engine.vae, "decode_images", decode_images)
    monkeypatch.setattr(engine.image_encoder, "encode_one", encode_one)
    # JPEG: several images of a batch are encoded one per thread, as they arrive.
    two_jpegs = {"output_format": "jpeg", "num_images": 2}
    replies = engine.serve_batch([req(seed=1, **two_jpegs), req(seed=2, **two_jpegs)])
    assert [r.status for r in replies] == [200, 200] and overlapped == [True]
    assert [decode_image(image).format for r in replies for image in r.body["images"]] == ["JPEG"] * 4


@pytest.mark.slow
def test_a_lone_png_is_encoded_when_claimed_across_the_pool(engine, monkeypatch):
    """One image has nothing to overlap with: it is deflated in row bands over every encoder thread."""
    real_encode, parts_seen = engine.image_encoder.encode_one, []

    def encode_one(pixels, fmt, parts=1, text=None):
        parts_seen.append(parts)
        return real_encode(pixels, fmt, parts, text)

    monkeypatch.setattr(engine.image_encoder, "encode_one", encode_one)
    assert engine.serve_batch([req(seed=1)])[0].status == 200
    assert parts_seen == [engine.image_encoder.threads]


@pytest.mark.slow
def test_each_batch_reports_its_stage_times(engine):
    result = engine.serve([req(seed=1), req(seed=2, width=256)])
    assert set(result.stage_ms) == {"generate", "decode", "encode", "reply"}
    assert all(ms > 0 for ms in result.stage_ms.values())
    assert [job.seed for job in result.jobs] == [1, 2] and all(job.reply.status == 200 for job in result.jobs)
    assert all(not job.claims and job.latents is None for job in result.jobs)  # nothing held past encode


# ------------------------------------------------------------------ image-to-image
def test_image_to_image_reply_is_a_png_of_the_images_size(engine):
    reply = engine.serve_batch([image_req(seed=5)])[0]
    assert reply.status == 200
    assert set(reply.body) == {"image", "seed", "width", "height", "format"}  # the same reply as text-to-image
    assert decode_image(reply.body["image"]).size == (320, 256)
    assert (reply.body["seed"], reply.body["width"], reply.body["height"]) == (5, 320, 256)


@pytest.mark.slow
def test_same_seed_same_image_same_params_same_bytes(engine):
    first = engine.serve_batch([image_req(seed=123, strength=0.75)])[0]
    second = engine.serve_batch([image_req(seed=123, strength=0.75)])[0]
    assert first.body["image"] == second.body["image"]
    several = engine.serve_batch([image_req(seed=123, num_images=2)])[0]
    assert several.body["images"] == engine.serve_batch([image_req(seed=123, num_images=2)])[0].body["images"]
    assert several.body["images"][0] != several.body["images"][1]  # each image its own noise


@pytest.mark.slow
def test_the_output_depends_on_the_image_and_the_strength(engine):
    base = pixels_of(engine.serve_batch([image_req(seed=1)])[0])
    # The tiny model's random VAE carries little of an image into its latents: the effect is small but
    # well beyond the one level of rounding noise.
    other_image = pixels_of(engine.serve_batch([image_req(seed=1, image=b64(encode(picture(320, 256).rotate(180))))])[0])
    assert np.abs(other_image - base).max() > 4
    for other in (image_req(seed=1, strength=1.0), req(seed=1, width=320, height=256, num_inference_steps=2)):
        assert np.abs(pixels_of(engine.serve_batch([other])[0]) - base).mean() > 10


@pytest.mark.slow
def test_image_to_image_seed_reproduces_whatever_it_is_batched_with(engine):
    alone = pixels_of(engine.serve_batch([image_req(seed=9)])[0])
    batch = engine.serve_batch([image_req(seed=1, prompt="a dog"), image_req(seed=9), req(seed=9)])
    assert np.abs(pixels_of(batch[1]) - alone).max() <= 1  # rounding of batched kernels only


@pytest.mark.slow
def test_image_and_text_requests_never_share_a_pipeline_call(engine, monkeypatch):
    text, image = PipelineSpy(engine.pipe), PipelineSpy(engine.img2img_pipe)
    monkeypatch.setattr(engine, "pipe", text)
    monkeypatch.setattr(engine, "img2img_pipe", image)
    replies = engine.serve_batch([
        req(seed=1, width=320, height=256, num_inference_steps=2),  # the image requests' size and steps
        image_req(seed=2), image_req(seed=3, num_images=2), image_req(seed=4, strength=1.0),
        req(seed=5, width=320, height=256, num_inference_steps=2),
    ])
    assert [r.status for r in replies] == [200] * 5
    assert text.batches == [2] and text.strengths == [None]
    assert sorted(zip(image.batches, image.strengths, strict=True)) == [(1, 1.0), (3, 0.5)]  # by strength


@pytest.mark.slow
def test_text_to_image_is_unchanged_by_image_to_image_requests(engine):
    """Both pipelines share the scheduler and every model: an image-to-image call must leave nothing
    behind that changes the next text-to-image reply."""
    before = engine.serve_batch([req(seed=77, num_inference_steps=3)])[0].body["image"]
    engine.serve_batch([image_req(seed=1, num_inference_steps=4, strength=0.3)])
    assert engine.serve_batch([req(seed=77, num_inference_steps=3)])[0].body["image"] == before


@pytest.mark.slow
def test_out_of_memory_in_image_to_image_is_isolated_the_same_way(engine, monkeypatch):
    real = engine.img2img_pipe
    guard = OutOfMemoryAbove(lambda **kw: real(**kw), limit=2)
    monkeypatch.setattr(engine, "img2img_pipe", lambda **kw: guard(len(kw["prompt"]), **kw))
    replies = engine.serve_batch([image_req(seed=1), image_req(seed=2, num_images=3), req(seed=3)])
    assert [r.status for r in replies] == [200, 507, 200]
    assert guard.calls == [4, 1, 3]


@pytest.mark.slow
def test_sdxl_turbo_serves_image_to_image_too(tiny_sdxl_dir):
    sdxl = make_engine(tiny_sdxl_dir)
    assert type(sdxl.img2img_pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    replies = sdxl.serve_batch([image_req(seed=1), image_req(seed=1), req(seed=1)])
    assert [r.status for r in replies] == [200] * 3
    assert replies[0].body["image"] == replies[1].body["image"]
    assert decode_image(replies[0].body["image"]).size == (320, 256)


@pytest.mark.slow
def test_sdxl_turbo_is_served_by_the_same_engine(tiny_sdxl_dir):
    sdxl = make_engine(tiny_sdxl_dir)
    assert type(sdxl.pipe).__name__ == "StableDiffusionXLPipeline"
    replies = sdxl.serve_batch([req(seed=1), req(seed=1), req(seed=2, width=256)])
    assert [r.status for r in replies] == [200] * 3
    assert replies[0].body["image"] == replies[1].body["image"]
    assert decode_image(replies[2].body["image"]).size == (256, 512)


@pytest.mark.slow
def test_freed_memory_is_returned_after_each_batch(engine, monkeypatch):
    import handler.engine as engine_module
    from handler.memory import release_free_memory

    calls = []
    monkeypatch.setattr(engine_module, "release_free_memory", lambda: calls.append(1))
    engine.serve_batch([req(seed=1)])
    assert calls == [1]
    assert release_free_memory() in (True, False)  # a no-op where the C library has no malloc_trim


@pytest.mark.slow
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


# ------------------------------------------------------------------ negative prompts and the settings in each image
def test_a_negative_prompt_changes_the_image_of_the_same_seed_with_guidance(engine):
    plain, steered = engine.serve_batch([req(seed=11, guidance_scale=2.0),
                                         req(seed=11, guidance_scale=2.0, negative_prompt="a dog")])
    assert plain.status == steered.status == 200
    assert np.abs(pixels_of(plain) - pixels_of(steered)).max() > 0
    again = engine.serve_batch([req(seed=11, guidance_scale=2.0, negative_prompt="a dog")])[0]
    assert np.abs(pixels_of(again) - pixels_of(steered)).max() <= 1  # reproducible, as any seed (README)


def test_the_pipeline_gets_each_images_negative_prompt(engine, monkeypatch):
    seen = []
    real = engine.pipe

    def spy(**kwargs):
        seen.append(kwargs.get("negative_prompt"))
        return real(**kwargs)

    monkeypatch.setattr(engine, "pipe", spy)
    engine.serve_batch([req(guidance_scale=2.0, negative_prompt="fog", num_images=2),
                        req(guidance_scale=2.0, negative_prompt="rain"), req(guidance_scale=2.0)])
    assert sorted(seen, key=str) == [None, ["fog", "fog", "rain"]]


def text_of(reply) -> str:
    image = decode_image(reply.body["image"])
    if image.format == "PNG":
        return image.text["parameters"]
    return image.getexif().get_ifd(0x8769)[0x9286].removeprefix(b"UNICODE\0").decode("utf-16-be")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_each_image_carries_its_settings_but_not_the_prompt_by_default(engine, fmt):
    reply = engine.serve_batch([req(seed=5, output_format=fmt, width=256, height=256)])[0]
    text = text_of(reply)
    assert text.startswith("Steps: 1, CFG scale: 0.0, Seed: 5, Size: 256x256, Model hash: ")
    assert "a cat" not in text  # log_prompts is off as shipped


def test_the_prompts_go_in_when_log_prompts_is_on(tiny_sd_dir):
    logging_engine = make_engine(tiny_sd_dir, log_prompts=True)
    reply = logging_engine.serve_batch([req(seed=5, guidance_scale=2.0, negative_prompt="a dog", width=256,
                                            height=256)])[0]
    assert text_of(reply).startswith("a cat\nNegative prompt: a dog\nSteps: 1, CFG scale: 2.0, Seed: 5, ")


def test_a_request_or_the_endpoint_can_leave_the_settings_out(engine, tiny_sd_dir):
    kept = engine.serve_batch([req(seed=5, width=256, height=256)])[0]
    left_out = engine.serve_batch([req(seed=5, width=256, height=256, metadata=False)])[0]
    assert decode_image(left_out.body["image"]).text == {}
    assert np.array_equal(pixels_of(kept), pixels_of(left_out))  # the same image, without the text
    bare_engine = make_engine(tiny_sd_dir, image_metadata=False)
    assert decode_image(bare_engine.serve_batch([req(seed=5, width=256, height=256)])[0].body["image"]).text == {}


def test_sdxl_turbo_takes_a_negative_prompt_too(tiny_sdxl_dir):
    sdxl = make_engine(tiny_sdxl_dir)
    plain, steered = sdxl.serve_batch([req(seed=3, guidance_scale=2.0, width=256, height=256),
                                       req(seed=3, guidance_scale=2.0, width=256, height=256, negative_prompt="fog")])
    assert plain.status == steered.status == 200
    assert np.abs(pixels_of(plain) - pixels_of(steered)).max() > 0
