"""The fast PNG writer: valid files that decode to exactly the input pixels, serial or in parallel bands."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from handler.encode import ImageEncoder
from handler.png import encode_png, filter_up
from handler.settings import load_settings


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()  # verifies every chunk's CRC and the zlib stream's Adler-32
    assert (image.format, image.mode) == ("PNG", "RGB")
    return np.asarray(image)


def gradient(height=256, width=320) -> np.ndarray:
    """A smooth, photograph-like image: where the Up filter and run-length deflate pay off."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(4) as executor:
        yield executor


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_round_trips_exactly(level):
    pixels = gradient()
    assert np.array_equal(decode(encode_png(pixels, level)), pixels)


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_parallel_bands_make_one_valid_stream(pool, parts):
    pixels = np.random.default_rng(parts).integers(0, 256, (257, 300, 3), dtype=np.uint8)
    assert np.array_equal(decode(encode_png(pixels, 1, parts, pool.map)), pixels)


def test_compresses_smooth_images():
    pixels = gradient()
    assert len(encode_png(pixels)) < pixels.nbytes / 4


def test_up_filter_is_the_row_difference_modulo_256():
    pixels = np.array([[[10, 200, 0]], [[5, 100, 255]]], dtype=np.uint8)
    assert filter_up(pixels).tolist() == [[2, 10, 200, 0], [2, 251, 156, 255]]


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_refuses_what_is_not_8_bit_rgb(bad):
    with pytest.raises(ValueError, match="uint8 pixels"):
        encode_png(bad)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3))), st.integers(1, 5))
def test_any_image_round_trips(pool, pixels, parts):
    assert np.array_equal(decode(encode_png(pixels, 1, parts, pool.map)), pixels)


def test_encoder_splits_a_lone_image_and_matches_pillow_pixels():
    encoder = ImageEncoder(load_settings({"encode_threads": 4}, {}))
    pillow = ImageEncoder(load_settings({"png_encoder": "pillow"}, {}))
    pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    fast = encoder.hand_over(pixels, "png", now=False)()  # a lone image: row bands over the pool
    slow = pillow.hand_over(pixels, "png", now=False)()
    assert np.array_equal(decode(fast), decode(slow))
    # A 768 KiB image is worth splitting: four bands deflated on four threads still decode as one.
    assert np.array_equal(decode(encoder.encode_one(pixels, "png", parts=4)), pixels)
    encoder.close()
    pillow.close()


def test_text_goes_in_text_chunks_pillow_reads_and_the_pixels_stay():
    pixels = gradient(64, 80)
    data = encode_png(pixels, text={"parameters": "a cat\nSteps: 1, Seed: 7", "Comment": "naïve café ☃"})
    image = Image.open(io.BytesIO(data))
    assert image.text == {"parameters": "a cat\nSteps: 1, Seed: 7", "Comment": "naïve café ☃"}
    assert np.array_equal(decode(data), pixels)
    # Latin-1 text is a tEXt chunk; anything else needs iTXt (UTF-8); both come before the image data.
    assert data.index(b"tEXtparameters\0") < data.index(b"iTXtComment\0") < data.index(b"IDAT")
    assert "naïve café ☃".encode() in data


def test_no_text_writes_no_text_chunks():
    data = encode_png(gradient(16, 16))
    assert b"tEXt" not in data and b"iTXt" not in data


@pytest.mark.parametrize("keyword", ["", "x" * 80, "tab\there", "☃"])
def test_a_keyword_outside_the_specification_is_refused(keyword):
    with pytest.raises(ValueError):
        encode_png(gradient(16, 16), text={keyword: "value"})
