"""The image-to-image input decoder (handler/image_input.py): a pure function, tested as data and fuzzed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from handler.image_input import (
    ACCEPTED_FORMATS, MAX_INPUT_PIXELS, MIN_INPUT_SIDE, ImageError, fit_size, load_init_image,
)
from handler.schema import MAX_SIDE, MIN_SIDE, SIDE_MULTIPLE, SIZE_BOUNDS
from tests.support.images import BAD_IMAGES, b64, damaged_images, encode, picture


def load(text: str, width=None, height=None):
    return load_init_image(text, SIZE_BOUNDS, width, height)


# ------------------------------------------------------------------ accepted input
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb_pixels_of_the_image(fmt):
    source = picture(320, 256)
    image = load(b64(encode(source, fmt, **({"quality": 95} if fmt != "PNG" else {}))))
    assert (image.pixels.shape, image.pixels.dtype, image.source_format) == ((256, 320, 3), np.uint8, fmt)
    tolerance = 0 if fmt == "PNG" else 12  # lossy formats
    assert np.abs(image.pixels.astype(int) - np.asarray(source, dtype=int)).mean() <= tolerance
    assert not image.pixels.flags.writeable


def test_accepted_formats_are_exactly_png_jpeg_and_webp():
    assert ACCEPTED_FORMATS == ("PNG", "JPEG", "WEBP")


@pytest.mark.parametrize("mode, expected_corner", [
    ("RGBA", (255, 255, 255)),  # fully transparent corner: white, not the hidden colour
    ("LA", (255, 255, 255)),
    ("P", None), ("L", None), ("1", None), ("CMYK", None),
])
def test_every_mode_becomes_rgb_and_transparency_white(mode, expected_corner):
    source = picture(256, 256, "RGBA" if mode in ("RGBA", "LA") else "RGB")
    if mode in ("RGBA", "LA"):
        alpha = np.full((256, 256), 255, np.uint8)
        alpha[:16, :16] = 0
        source.putalpha(Image.fromarray(alpha))
    converted = source.convert(mode)
    image = load(b64(encode(converted, "JPEG" if mode == "CMYK" else "PNG")))
    assert image.pixels.shape == (256, 256, 3)
    if expected_corner:
        assert tuple(image.pixels[2, 2]) == expected_corner
        assert tuple(image.pixels[100, 100]) != (255, 255, 255)


def test_palette_transparency_becomes_white():
    source = Image.new("P", (128, 128), 0)
    source.putpalette([10, 20, 30] + [200, 0, 0] * 255)
    source.paste(1, (64, 0, 128, 128))
    image = load(b64(encode(source, "PNG", transparency=0)))
    assert tuple(image.pixels[10, 10]) == (255, 255, 255)  # index 0 is transparent
    assert tuple(image.pixels[10, 250]) == (200, 0, 0)


def test_16_bit_greyscale_keeps_its_top_8_bits():
    grey = np.full((128, 128), 40000, np.uint16)  # 40000 >> 8 = 156; clipping would give 255
    image = load(b64(encode(Image.fromarray(grey), "PNG")))
    assert tuple(image.pixels[0, 0]) == (156, 156, 156)


def test_exif_orientation_is_applied():
    """Orientation 6 means "rotate 90° clockwise to display": the stored top-left ends up top-right."""
    stored = np.zeros((256, 320, 3), np.uint8)
    stored[:32, :32] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load(b64(encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)))
    assert image.source_size == (256, 320) and image.size == (256, 320)
    assert image.pixels[5, -5, 0] > 200 and image.pixels[5, 5, 0] < 50


def test_data_url_prefix_and_line_breaks_are_accepted():
    data = b64(encode(picture(256, 256)))
    wrapped = "\n".join(data[i:i + 76] for i in range(0, len(data), 76))  # what `base64` prints
    assert load(f"data:image/png;base64,{data}").size == (256, 256)
    assert load(wrapped).size == (256, 256)


@pytest.mark.parametrize("source, expected", [
    ((512, 512), (512, 512)),
    ((300, 401), (304, 400)),      # rounded to the nearest multiple of 8
    ((2000, 1000), (1024, 512)),   # scaled down to fit
    ((100, 200), (256, 512)),      # scaled up to fit
    ((64, 64), (256, 256)),
    ((4096, 1024), (1024, 256)),   # 4:1, the most elongated accepted
    ((1023, 767), (1024, 768)),
])
def test_output_size_comes_from_the_image(source, expected):
    assert fit_size(source, SIZE_BOUNDS) == expected
    width, height = expected
    assert width % SIDE_MULTIPLE == height % SIDE_MULTIPLE == 0 and MIN_SIDE <= min(expected) <= max(expected) <= MAX_SIDE


def test_a_given_width_or_height_wins_and_the_other_keeps_the_aspect_ratio():
    assert fit_size((300, 400), SIZE_BOUNDS, width=512) == (512, 680)
    assert fit_size((300, 400), SIZE_BOUNDS, height=256) == (256, 256)  # 192 is below the bounds: clamped
    assert fit_size((300, 400), SIZE_BOUNDS, width=768, height=256) == (768, 256)
    assert load(b64(encode(picture(300, 400))), width=512).pixels.shape == (680, 512, 3)


# ------------------------------------------------------------------ the limits, just inside and just outside
def test_limits_are_those_documented():
    assert (MAX_INPUT_PIXELS, MIN_INPUT_SIDE, SIZE_BOUNDS.max_aspect_ratio) == (4096 * 4096, 64, 4.0)
    assert Image.MAX_IMAGE_PIXELS == MAX_INPUT_PIXELS  # Pillow's own bomb check is on, at our limit


def test_the_largest_image_allowed_is_decoded():
    image = load(b64(encode(Image.new("L", (4096, 4096), 90), "PNG")))
    assert image.size == (1024, 1024) and image.source_size == (4096, 4096)


def test_smallest_side_and_aspect_ratio_just_inside_are_accepted():
    assert load(b64(encode(picture(MIN_INPUT_SIDE, MIN_INPUT_SIDE)))).size == (256, 256)
    assert load(b64(encode(picture(1024, 256)))).size == (1024, 256)


@pytest.mark.parametrize("text, status, word", BAD_IMAGES, ids=range(len(BAD_IMAGES)))
def test_bad_image_is_refused_with_its_status_and_reason(text, status, word):
    with pytest.raises(ImageError) as caught:
        load(text)
    assert caught.value.status == status and word in caught.value.message, caught.value.message


def test_no_parser_but_png_jpeg_and_webp_ever_runs(monkeypatch):
    """Other formats are refused because their parsers never see the bytes, not because a parser read
    them first: every other registered parser is replaced by one that records being asked."""
    Image.init()
    asked = []
    for name, (_factory, accept) in list(Image.OPEN.items()):
        if name not in ACCEPTED_FORMATS:
            monkeypatch.setitem(Image.OPEN, name, (lambda *a, name=name: asked.append(name), accept))
    for fmt in ("GIF", "BMP", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI"):
        data = encode(picture(128, 128, "RGBA" if fmt in ("ICO", "DDS") else "RGB"), fmt)
        with pytest.raises(ImageError):
            load(b64(data))
    assert asked == []


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded():
    """A real 20-megapixel PNG of one colour is 20 KB: refused from its header, long before 60 MB of
    pixels exist (Pillow would need seconds and the memory to decode it)."""
    bomb = encode(Image.new("L", (5000, 4000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageError) as caught:
        load(b64(bomb))
    assert caught.value.status == 413 and "5000x4000" in caught.value.message


def test_messages_never_echo_the_data():
    secret = b64(b"\x00SECRET-PAYLOAD\x00" * 20)
    with pytest.raises(ImageError) as caught:
        load(secret)
    assert "SECRET" not in caught.value.message and secret[:20] not in caught.value.message


# ------------------------------------------------------------------ fuzzing
def check_outcome(text: str, width=None, height=None):
    """Any input: either RGB pixels of a servable size, or an ImageError with a 4xx; nothing else."""
    try:
        image = load(text, width, height)
    except ImageError as error:
        assert error.status in (400, 413) and error.message and len(error.message) < 300
        return None
    height_px, width_px, channels = image.pixels.shape
    assert channels == 3 and image.pixels.dtype == np.uint8
    assert MIN_SIDE <= width_px <= MAX_SIDE and MIN_SIDE <= height_px <= MAX_SIDE
    assert width_px % SIDE_MULTIPLE == 0 and height_px % SIDE_MULTIPLE == 0
    return image


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=600).map(b64),
                 st.binary(max_size=300).map(lambda d: "data:image/png;base64," + b64(d))))
def test_any_text_decodes_or_gets_a_4xx(text):
    check_outcome(text)


@_FUZZ
@given(damaged_images())
def test_damaged_images_decode_or_get_a_4xx(data):
    check_outcome(b64(data))


@_FUZZ
@given(width=st.integers(1, 1400), height=st.integers(1, 1400), fmt=st.sampled_from(["PNG", "JPEG", "WEBP"]),
       mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1"]),
       given_width=st.none() | st.integers(MIN_SIDE // 8, MAX_SIDE // 8).map(lambda n: n * 8))
def test_valid_images_of_any_size_are_served_or_refused_by_the_rules(width, height, fmt, mode, given_width):
    image = Image.new(mode, (width, height), 1)
    if fmt == "JPEG" and mode not in ("RGB", "L"):
        image = image.convert("RGB")
    outcome = check_outcome(b64(encode(image, fmt)), width=given_width)
    elongated = max(width, height) / min(width, height) > SIZE_BOUNDS.max_aspect_ratio
    expected_refusal = min(width, height) < MIN_INPUT_SIDE or elongated
    assert (outcome is None) == expected_refusal, (width, height)
    if outcome is not None:
        assert outcome.source_size == (width, height)
        if given_width is not None:
            assert outcome.size[0] == given_width
