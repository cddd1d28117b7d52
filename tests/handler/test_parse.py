"""Request parsing: a pure function, tested as data (body -> status, field named) and fuzzed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler.parse import RequestError, parse_request
from handler.schema import MAX_BODY_BYTES, MAX_IMAGE_BODY_BYTES, MAX_IMAGE_CHARS, GenerationRequest
from tests.support.bad_requests import BAD_IMAGE_REQUESTS, BAD_REQUESTS, body
from tests.support.images import b64, encode, picture


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/octet-stream", None, "",
    "text/plain", "application/vnd.sdturbo+json",
])
def test_json_accepted_under_sagemaker_content_types(content_type):
    assert parse_request(body(seed=7), content_type).seed == 7


def test_already_decoded_json_is_accepted():
    assert parse_request({"prompt": "a cat", "seed": 3}).seed == 3


def assert_refused(raw: bytes, status: int, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(raw, "application/json")
    error = caught.value
    assert error.status == status
    reply = error.to_body()
    assert reply["code"] == status and reply["message"]
    assert field in {e["field"] for e in reply["errors"]}, reply
    json.dumps(reply)  # always serialisable


@pytest.mark.parametrize("raw, status, field", BAD_REQUESTS)
def test_bad_request_gets_4xx_naming_the_field(raw, status, field):
    assert_refused(raw, status, field)


def test_oversize_body_is_413():
    with pytest.raises(RequestError) as caught:
        parse_request(b'{"prompt": "' + b"a" * MAX_BODY_BYTES + b'"}', "application/json")
    assert caught.value.status == 413


@pytest.mark.parametrize("content_type", ["image/png", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_non_json_content_type_is_415(content_type):
    with pytest.raises(RequestError) as caught:
        parse_request(body(), content_type)
    assert caught.value.status == 415
    assert caught.value.errors[0]["field"] == "Content-Type"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"a cat"', b"42", b"null"])
def test_valid_json_that_is_no_object_is_not_called_invalid_json(raw):
    with pytest.raises(RequestError) as caught:
        parse_request(raw, "application/json")
    assert "must be a JSON object" in caught.value.message and "not valid JSON" not in caught.value.message


def test_unknown_field_error_lists_the_allowed_fields():
    with pytest.raises(RequestError) as caught:
        parse_request(body(steps=2), "application/json")
    assert "num_inference_steps" in caught.value.errors[0]["message"]


@pytest.mark.parametrize("raw, status, field", BAD_IMAGE_REQUESTS, ids=range(len(BAD_IMAGE_REQUESTS)))
def test_bad_image_request_gets_4xx_naming_the_field(raw, status, field):
    assert_refused(raw, status, field)


def test_body_limits_with_and_without_an_image():
    big_image = b64(encode(picture(1024, 1024), "PNG", compress_level=0))  # ~3 MiB of base64
    assert MAX_BODY_BYTES < len(big_image) < MAX_IMAGE_CHARS
    assert parse_request(body(image=big_image)).init_image.size == (1024, 1024)
    # The same size without an image (a prompt, or an image key that is not a string) stays 413.
    for raw in (body(prompt="x" * len(big_image)), body(image=None, padding="x" * len(big_image)),
                b'{"prompt": "a", "image": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"):
        with pytest.raises(RequestError) as caught:
            parse_request(raw)
        assert caught.value.status == 413 and caught.value.errors[0]["field"] == "body"
    just_over = body(image="A" * (MAX_IMAGE_BODY_BYTES - len(body(image=""))) + "AAAA")
    assert len(just_over) == MAX_IMAGE_BODY_BYTES + 4
    with pytest.raises(RequestError) as caught:
        parse_request(just_over)
    assert caught.value.status == 413 and str(MAX_IMAGE_BODY_BYTES) in caught.value.message


def test_an_unguided_negative_prompt_is_refused_with_why_and_how():
    with pytest.raises(RequestError) as caught:
        parse_request(body(negative_prompt="fog", guidance_scale=0.5))
    assert caught.value.status == 422
    assert caught.value.message == (
        "invalid request: negative_prompt: has no effect at guidance_scale 0.5: a negative prompt steers "
        "classifier-free guidance, which runs only above 1 (at twice the UNet work); raise guidance_scale "
        "(e.g. 2.0) or leave negative_prompt out")


def test_a_422_needs_every_error_to_be_an_ignored_field():
    """A request with a plain mistake as well is a 400: the caller must fix that first."""
    assert_refused(body(negative_prompt="fog", width=100), 400, "width")


# ------------------------------------------------------------------ property-based fuzzing of the parser


_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(), c, max_size=5),
                     max_leaves=20)
_fields = st.fixed_dictionaries({}, optional={name: _json for name in GenerationRequest.model_fields})


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=2000), _fields.map(lambda d: json.dumps(d).encode()),
                 _json.map(lambda v: json.dumps(v).encode())))
def test_any_body_parses_or_gets_a_4xx(raw):
    try:
        request = parse_request(raw, "application/json")
    except RequestError as error:
        assert 400 <= error.status < 500
        json.dumps(error.to_body())
        assert len(error.message) < 5000  # bounded, whatever the input
    else:
        assert isinstance(request, GenerationRequest) and request.prompt.strip()
