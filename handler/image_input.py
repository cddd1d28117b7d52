"""The caller's starting image for image-to-image: base64 text in, RGB pixels of a servable size out.

This is the server's only untrusted binary input, so each step is bounded before it can cost much:

1. base64    inline data only (a ``data:image/...;base64,`` prefix is allowed); URLs and paths are
             refused, because the server never fetches anything;
2. open      only Pillow's PNG, JPEG and WebP parsers may read the bytes (no GIF, TIFF, BMP, PSD...);
3. check     the size from the header, before any pixel is decoded: pixel count (decompression bombs),
             smallest side, aspect ratio;
4. decode    all pixels; truncated or corrupt data is refused;
5. orient    EXIF orientation applied, so a phone photo is upright;
6. colour    alpha composited onto white, palette/greyscale/CMYK/16-bit converted to 8-bit RGB;
7. size      width and height from the image (rounded to multiples of 8 within the request's size
             bounds) unless the caller gave them, then resized with Lanczos.

Every refusal is an ``ImageError`` with the HTTP status the caller gets (413 for too many pixels, 400
otherwise) and a message that never echoes the data. Pure functions with no model or server state: unit-
and fuzz-tested directly (tests/handler/test_image_input.py). The request's own bounds (the base64 length, the
output size bounds) live in handler/schema.py, which passes them in.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

# The limits of an image's content; the reason for each is beside it.
# PNG, JPEG and WebP are what browsers, phones and image tools export; every other parser Pillow has is
# attack surface that no caller needs. A phone JPEG that carries a depth map or preview is "MPO" to Pillow:
# its first frame is a plain JPEG.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
_JPEG_VARIANTS = {"MPO": "JPEG"}
# 16 megapixels: any phone or camera photo up to 4096x4096 fits; decoding one costs ~50 MB (RGB) to ~70 MB
# (RGBA) before it is shrunk to at most 1024x1024. A PNG or WebP of one flat colour compresses a
# 100-megapixel image into a few kilobytes (a decompression bomb), so the count is read from the header
# and checked before a single pixel is decoded.
MAX_INPUT_PIXELS = 4096 * 4096
# Below 64 px on a side (8 latent pixels) an image gives the model almost nothing to start from and would
# be upscaled more than 4x; a 1x1 image is a mistake or a tracking pixel, not a picture.
MIN_INPUT_SIDE = 64

# Pillow's own decompression-bomb check runs inside Image.open for every parser, before ours. It reads a
# process-wide limit; this module is the worker's only image parser, so that limit is ours too (Pillow
# warns above it and refuses twice as many pixels, which is a DecompressionBombError, answered 413).
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,", re.IGNORECASE)


class ImageError(Exception):
    """The image cannot be used; ``status`` is the HTTP status the caller gets, ``message`` says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class SizeBounds:
    """The request's output size bounds (handler/schema.py): sides in [min_side, max_side], multiples of
    ``multiple``."""

    min_side: int
    max_side: int
    multiple: int

    @property
    def max_aspect_ratio(self) -> float:
        """The most elongated output the bounds allow (1024:256 = 4:1); a longer image could only be
        squashed or cropped beyond recognition, so it is refused."""
        return self.max_side / self.min_side

    def round_side(self, side: float) -> int:
        """The nearest multiple of ``multiple`` (halves up), within the bounds."""
        rounded = int(side / self.multiple + 0.5) * self.multiple
        return min(self.max_side, max(self.min_side, rounded))


@dataclass(frozen=True, eq=False)
class InitImage:
    """A decoded starting image: ``pixels`` is (height, width, 3) uint8 RGB at the output size, read-only."""

    pixels: np.ndarray
    source_format: str
    source_size: tuple[int, int]  # (width, height) after EXIF orientation

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]


def load_init_image(text: str, bounds: SizeBounds, width: int | None = None,
                    height: int | None = None) -> InitImage:
    """Steps 1-7 of the module docstring.

    Args:
        text: the request's ``image`` field (its length is bounded by the schema).
        bounds: the request's output size bounds.
        width, height: the caller's output size, if given (already within ``bounds``).

    Returns:
        The image as RGB pixels of the output size.

    Raises:
        ImageError: the image is not usable; see the module docstring.
    """
    opened = open_image(decode_base64(text), bounds)
    source_format = _format_of(opened)
    image = decode_pixels(opened)
    source_size = image.size
    target = fit_size(source_size, bounds, width, height)
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    pixels.flags.writeable = False
    return InitImage(pixels, source_format, source_size)


def decode_base64(text: str) -> bytes:
    """Step 1: the image's bytes from inline base64 (line breaks allowed, as `base64` writes them)."""
    if not isinstance(text, str):
        raise ImageError(400, "not a string: send the file as base64 text")
    data_url = _DATA_URL.match(text)
    if data_url:
        text = text[data_url.end():]
    elif text[:5].lower() == "data:":
        raise ImageError(400, "a data: URL other than data:image/png|jpeg|webp;base64,<data>")
    elif _URL.match(text[:256]):
        raise ImageError(400, "a URL: send the image itself as base64; the server never fetches images")
    compact = "".join(text.split())
    if not compact:
        raise ImageError(400, "empty: send a PNG, JPEG or WebP file as base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(400, "not valid base64: send the file's bytes base64-encoded (not a path or "
                              "URL); `base64 -w0 FILE` prints it") from None


def open_image(data: bytes, bounds: SizeBounds) -> Image.Image:
    """Steps 2-3: an image of an accepted format whose size (from its header) is within the limits; no
    pixel is decoded yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except Exception:  # Pillow's parsers raise many types on malformed data; all mean the same to a caller
        raise ImageError(400, "not a PNG, JPEG or WebP image (or its header is corrupt)") from None
    if _format_of(image) not in ACCEPTED_FORMATS:  # Image.open(formats=...) ensures it; this states the rule
        raise ImageError(400, f"{image.format}, which is not accepted: send PNG, JPEG or WebP")
    check_dimensions(*image.size, bounds)
    return image


def check_dimensions(width: int, height: int, bounds: SizeBounds) -> None:
    """Step 3, on the header's size (EXIF orientation only swaps the sides): pixel count, smallest side,
    aspect ratio."""
    if width * height > MAX_INPUT_PIXELS:
        raise _too_many_pixels(width, height)
    if min(width, height) < MIN_INPUT_SIDE:
        raise ImageError(400, f"{width}x{height} pixels: each side must be at least {MIN_INPUT_SIDE}")
    if max(width, height) / min(width, height) > bounds.max_aspect_ratio:
        raise ImageError(400, f"{width}x{height} pixels: the aspect ratio must be at most "
                              f"{bounds.max_aspect_ratio:g}:1 (the widest output, {bounds.max_side}x{bounds.min_side})")


def decode_pixels(image: Image.Image) -> Image.Image:
    """Steps 4-6: every pixel decoded, EXIF orientation applied, 8-bit RGB."""
    try:
        image.load()
        oriented = ImageOps.exif_transpose(image)
        return to_rgb(oriented)
    except Image.DecompressionBombError:
        raise _too_many_pixels() from None
    except Exception:  # truncated data (OSError), corrupt chunks (SyntaxError), bad EXIF (ValueError)...
        logger.debug("image decoding failed", exc_info=True)
        raise ImageError(400, "truncated or corrupt: its pixels could not be decoded") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. Transparent areas become white (what viewers show them on), not whatever colour the
    hidden pixels happen to hold; 16-bit greyscale keeps its top 8 bits rather than clipping at 255."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        grey = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def fit_size(source: tuple[int, int], bounds: SizeBounds, width: int | None = None,
             height: int | None = None) -> tuple[int, int]:
    """Step 7: the output size. Both given: those. One given: the other from the image's aspect ratio.
    Neither: the image's own size, scaled to fit the bounds (down if a side is too long, up if one is
    too short) and rounded to multiples of 8. ``source`` has passed ``check_dimensions``."""
    source_width, source_height = source
    long_side, short_side = max(source), min(source)
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, bounds.round_side(width * source_height / source_width)
    if height is not None:
        return bounds.round_side(height * source_width / source_height), height
    scale = 1.0
    if long_side > bounds.max_side:
        scale = bounds.max_side / long_side
    elif short_side < bounds.min_side:
        scale = bounds.min_side / short_side
    return bounds.round_side(source_width * scale), bounds.round_side(source_height * scale)


def _format_of(image: Image.Image) -> str:
    return _JPEG_VARIANTS.get(image.format or "", image.format or "")


def _too_many_pixels(width: int | None = None, height: int | None = None) -> ImageError:
    size = f"{width}x{height} = {width * height} pixels" if width and height else "too many pixels"
    return ImageError(413, f"{size}; the limit is {MAX_INPUT_PIXELS} ({MAX_INPUT_PIXELS / 1e6:.1f} megapixels)")
