"""The request schema: defaults, bounds, what an image changes, and which requests share a pipeline call."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.parse import parse_request
from handler.schema import (
    DEFAULT_IMAGE_STEPS, DEFAULT_STRENGTH, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MIN_SIDE, GenerationRequest,
)
from tests.support.bad_requests import IMAGE, body
from tests.support.images import b64, encode, picture


def test_defaults_follow_the_model_card():
    request = parse_request(b'{"prompt": "a cat"}', "application/json")
    assert request == GenerationRequest(prompt="a cat")
    assert (request.num_inference_steps, request.guidance_scale) == (1, 0.0)
    assert (request.width, request.height, request.num_images, request.output_format) == (512, 512, 1, "png")
    assert request.seed is None


@pytest.mark.parametrize("fields", [
    dict(seed=0), dict(seed=MAX_SEED), dict(num_inference_steps=4), dict(guidance_scale=10.0),
    dict(width=MIN_SIDE, height=MAX_SIDE), dict(num_images=MAX_IMAGES), dict(output_format="jpeg"),
    dict(output_format="webp"), dict(prompt="x" * MAX_PROMPT_CHARS), dict(guidance_scale=1),
])
def test_values_at_the_bounds_are_accepted(fields):
    parse_request(body(**fields), "application/json")


# ------------------------------------------------------------------ image-to-image


def test_an_image_makes_it_image_to_image_with_the_model_cards_defaults():
    request = parse_request(body(image=IMAGE, seed=1))
    assert (request.width, request.height) == (320, 256)  # from the image
    assert (request.num_inference_steps, request.strength) == (DEFAULT_IMAGE_STEPS, DEFAULT_STRENGTH) == (2, 0.5)
    assert request.init_image.pixels.shape == (256, 320, 3)
    text = parse_request(body(seed=1))
    assert (text.num_inference_steps, text.strength, text.init_image, text.width) == (1, None, None, 512)


def test_given_image_to_image_fields_are_kept():
    request = parse_request(body(image=IMAGE, width=512, num_inference_steps=4, strength=0.25, guidance_scale=1.0))
    assert (request.width, request.height, request.num_inference_steps, request.strength) == (512, 408, 4, 0.25)
    assert request.init_image.pixels.shape == (408, 512, 3)
    assert parse_request(body(image=IMAGE, strength=None)).strength == DEFAULT_STRENGTH
    assert parse_request(body(image=None)).init_image is None  # null image: text-to-image


def test_an_image_requests_defaults_are_resolved_in_one_explicit_step():
    """The fields declare the text-to-image defaults; ``resolved`` applies the image's, once."""
    sent = GenerationRequest(prompt="a cat", image=IMAGE)
    assert (sent.width, sent.num_inference_steps, sent.strength) == (512, 1, None)  # as the fields declare
    with pytest.raises(ValueError, match="resolved"):
        sent.init_image  # noqa: B018  (an unresolved image request has no image to use yet)
    request = sent.resolved()
    assert (request.width, request.height, request.num_inference_steps, request.strength) == (320, 256, 2, 0.5)
    assert request.resolved() is request and parse_request(body()).resolved() == parse_request(body())


def test_the_pipeline_arguments_a_group_shares():
    text = parse_request(body(width=320, num_inference_steps=2, guidance_scale=1.5))
    assert text.pipeline_arguments() == {"num_inference_steps": 2, "guidance_scale": 1.5, "height": 512,
                                         "width": 320}
    image = parse_request(body(image=IMAGE, strength=1.0))
    assert image.pipeline_arguments() == {"num_inference_steps": 2, "guidance_scale": 0.0, "strength": 1.0}


@pytest.mark.parametrize("steps, strength", [(1, 1.0), (2, 0.5), (4, 0.25), (3, 0.34), (4, 1)])
def test_steps_times_strength_of_at_least_one_is_accepted(steps, strength):
    parse_request(body(image=IMAGE, num_inference_steps=steps, strength=strength))


@pytest.mark.parametrize("guidance", [1.01, 2.0, 10.0])
def test_a_negative_prompt_is_taken_with_guidance_above_1(guidance):
    request = parse_request(body(negative_prompt="blurry, fog", guidance_scale=guidance))
    assert (request.negative_prompt, request.guidance_scale) == ("blurry, fog", guidance)


def test_metadata_is_written_unless_the_request_says_false():
    assert parse_request(body()).metadata is True
    assert parse_request(body(metadata=False)).metadata is False


def test_a_negative_prompt_never_shares_a_pipeline_call_with_none():
    plain, negative = parse_request(body(guidance_scale=2.0)), parse_request(body(guidance_scale=2.0,
                                                                                  negative_prompt="fog"))
    other = parse_request(body(guidance_scale=2.0, negative_prompt="rain", prompt="a dog"))
    assert plain.shape_key() != negative.shape_key() == other.shape_key()


def test_image_and_text_requests_never_share_a_key():
    text = parse_request(body(width=320, height=256, num_inference_steps=2))
    image = parse_request(body(image=IMAGE, seed=1))
    other_seed = parse_request(body(image=b64(encode(picture(320, 256).rotate(180))), seed=2, prompt="a dog"))
    stronger = parse_request(body(image=IMAGE, strength=1.0))
    assert (text.width, text.height, text.num_inference_steps) == (image.width, image.height, image.num_inference_steps)
    assert text.shape_key() != image.shape_key() == other_seed.shape_key() != stronger.shape_key()


def test_requests_of_one_shape_share_a_key():
    a = parse_request(body(seed=1, num_images=2))
    b = parse_request(body(prompt="a dog", output_format="jpeg"))
    c = parse_request(body(width=256))
    assert a.shape_key() == b.shape_key() != c.shape_key()


@settings(max_examples=200, deadline=None)
@given(st.builds(
    dict,
    prompt=st.text(min_size=1, max_size=MAX_PROMPT_CHARS).filter(str.strip),
    seed=st.integers(0, MAX_SEED),
    width=st.integers(MIN_SIDE // 8, MAX_SIDE // 8).map(lambda n: n * 8),
    num_images=st.integers(1, MAX_IMAGES),
))
def test_every_valid_request_is_accepted_unchanged(fields):
    request = parse_request(json.dumps(fields).encode(), "application/json")
    assert request.model_dump(include=set(fields)) == fields


def test_every_field_says_why_its_bounds_are_what_they_are():
    from handler.schema import request_json_schema

    properties = request_json_schema()["properties"]
    assert set(properties) == set(GenerationRequest.model_fields)
    assert all(len(spec.get("description", "")) > 20 for spec in properties.values()), properties
