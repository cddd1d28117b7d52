"""Encoding generated pixels (handler/encode.py): each format as asked, an encoding error handed back with its
image, and the choice between one image per thread and one image over every thread."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from handler.encode import ImageEncoder
from handler.settings import EngineSettings


def ramp(width: int = 96, height: int = 64) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    return np.stack([np.tile(x, (height, 1))] * 3, axis=-1)


@pytest.fixture(scope="module")
def encoder():
    encoder = ImageEncoder(EngineSettings(encode_threads=4))
    yield encoder
    encoder.close()


@pytest.mark.parametrize("png_encoder", ["fast", "pillow"])
@pytest.mark.parametrize("fmt, pil_format", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_each_format_decodes_to_the_image(png_encoder, fmt, pil_format):
    encoder = ImageEncoder(EngineSettings(png_encoder=png_encoder, encode_threads=2))
    pixels = ramp()
    image = Image.open(io.BytesIO(encoder.encode_one(pixels, fmt)))
    assert (image.format, image.size, image.mode) == (pil_format, (96, 64), "RGB")
    if fmt == "png":  # lossless
        assert np.array_equal(np.asarray(image), pixels)
    encoder.close()


def test_a_png_in_bands_is_the_same_image(encoder):
    pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    banded = encoder.encode_one(pixels, "png", parts=encoder.threads)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(banded))), pixels)


def test_an_encoding_error_comes_back_with_its_image_instead_of_raising(encoder):
    for now in (True, False):
        claim = encoder.hand_over(ramp(), "bmp", now=now)
        failure = claim()
        assert isinstance(failure, ValueError) and "bmp" in str(failure)
    assert Image.open(io.BytesIO(encoder.hand_over(ramp(), "jpeg", now=True)())).format == "JPEG"


@pytest.mark.parametrize("formats, per_image", [
    (["png"], False),                       # a lone image: spread over the pool
    (["jpeg"], False),
    (["jpeg", "webp"], True),               # several images: one per thread, as they arrive
    (["png", "png"], False),                # fewer fast PNGs than threads: each in bands
    (["png"] * 4, True),                    # as many as threads
    (["png", "jpeg"], True),
])
def test_when_images_are_encoded_one_per_thread(encoder, formats, per_image):
    assert encoder.threads == 4
    assert encoder.per_image(formats) is per_image


def test_zero_threads_means_one_per_core_up_to_8(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    encoder = ImageEncoder(EngineSettings(encode_threads=0))
    assert encoder.threads == 8
    encoder.close()


@pytest.mark.parametrize("png_encoder", ["fast", "pillow"])
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_the_text_handed_over_goes_inside_the_file(png_encoder, fmt):
    from handler.metadata import SOFTWARE

    encoder = ImageEncoder(EngineSettings(png_encoder=png_encoder, encode_threads=2))
    text = "a cat ☃\nSteps: 1, Seed: 7"
    tagged = Image.open(io.BytesIO(encoder.hand_over(ramp(), fmt, now=True, text=text)()))
    bare = Image.open(io.BytesIO(encoder.hand_over(ramp(), fmt, now=False)()))
    encoder.close()
    if fmt == "png":
        assert tagged.text == {"parameters": text, "Software": SOFTWARE} and bare.text == {}
    else:
        comment = tagged.getexif().get_ifd(0x8769)[0x9286]
        assert comment == b"UNICODE\0" + text.encode("utf-16-be") and tagged.getexif()[0x0131] == SOFTWARE
        assert len(bare.getexif()) == 0
