"""Images for the tests: pictures that show resizing and decoding errors, files of each format, and the
table of image fields the server must refuse (shared by the image decoder's, the parser's and the real
server's tests)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from handler.image_input import MIN_INPUT_SIDE
from handler.png import PNG_SIGNATURE, chunk


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Colour ramps (not flat, so resizing and decoding errors show)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no data: how a decompression bomb
    (or a lie) looks before any pixel is decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_with_a_broken_chunk() -> bytes:
    """A PNG whose pixel data continues in a chunk with an invalid type: Pillow raises SyntaxError (not
    OSError) while decoding, the kind of error a narrow ``except`` would let through as a 500."""
    good = encode(picture(96, 80))
    start = good.index(b"IDAT") - 4
    length = struct.unpack(">I", good[start:start + 4])[0]
    pixels = good[start + 8:start + 8 + length]
    return good[:start] + chunk(b"IDAT", pixels[:length // 2]) + chunk(b"\0IEN", pixels[length // 2:]) + chunk(b"IEND", b"")


# A 320x256 picture as an image-to-image request's image.
IMAGE = b64(encode(picture(320, 256)))


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# (image field, expected status, a word the message must contain)
BAD_IMAGES = [
    ("", 400, "empty"),
    ("   \n ", 400, "empty"),
    ("not base64!", 400, "base64"),
    ("QUJ", 400, "base64"),                                        # bad padding
    ("ünïcode", 400, "base64"),
    ("https://example.com/cat.png", 400, "never fetches"),
    ("http://169.254.169.254/latest/meta-data/", 400, "never fetches"),
    ("s3://bucket/cat.png", 400, "never fetches"),
    ("file:///etc/passwd", 400, "never fetches"),
    ("/etc/passwd", 400, "base64"),
    ("data:text/html;base64,PGgxPg==", 400, "data:"),
    (b64(b"GIF89a" + b"\0" * 100), 400, "PNG, JPEG or WebP"),
    (b64(encode(picture(128, 128), "GIF")), 400, "PNG, JPEG or WebP"),
    (b64(encode(picture(128, 128), "BMP")), 400, "PNG, JPEG or WebP"),
    (b64(encode(picture(128, 128), "TIFF")), 400, "PNG, JPEG or WebP"),
    (b64(b"\x00" * 1000), 400, "PNG, JPEG or WebP"),
    (b64(b"%PDF-1.7 " + b"x" * 100), 400, "PNG, JPEG or WebP"),
    (b64(truncated(encode(picture(256, 256), "PNG"))), 400, "truncated"),
    (b64(truncated(encode(picture(256, 256), "JPEG"))), 400, "truncated"),
    (b64(truncated(encode(picture(256, 256), "WEBP"))), 400, ""),
    (b64(encode(picture(256, 256))[:40]), 400, ""),                # header only
    (b64(png_with_a_broken_chunk()), 400, "corrupt"),
    (b64(encode(Image.new("RGB", (1, 1)))), 400, "at least 64"),
    (b64(encode(picture(MIN_INPUT_SIDE - 1, 256))), 400, "at least 64"),
    (b64(encode(picture(1025, 256))), 400, "aspect ratio"),
    (b64(encode(picture(256, 1025))), 400, "aspect ratio"),
    (b64(png_header_only(4097, 4096)), 413, "4097x4096"),         # our check, from the header
    (b64(png_header_only(20_000, 20_000)), 413, "pixels"),        # Pillow's bomb error (over 2x the limit)
    (b64(png_header_only(2**31 - 1, 2**31 - 1)), 413, "pixels"),
]


_SEEDS = {fmt: encode(picture(96, 80), fmt) for fmt in ("PNG", "JPEG", "WEBP")}


@st.composite
def damaged_images(draw):
    """A valid image of each accepted format, then cut, overwritten or spliced at random places."""
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["cut", "flip", "insert", "overwrite"]))
        if action == "cut":
            del data[position:]
        elif action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[position:position + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff"]))
    return bytes(data)
