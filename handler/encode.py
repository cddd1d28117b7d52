"""Encode generated pixels (uint8 HxWx3 arrays) as PNG/JPEG/WebP bytes, in parallel, with the settings that
made each image inside it when the engine hands them over (handler/metadata.py)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from handler.metadata import exif, png_text
from handler.png import encode_png
from handler.settings import EngineSettings

# Below this many raw bytes per band, splitting one PNG over threads costs more than it saves.
_MIN_BAND_BYTES = 128 * 1024

# An image handed to the encoder: call it for its bytes (or, if encoding failed, the exception).
Claim = Callable[[], "bytes | Exception"]


class ImageEncoder:
    """Encodes images with the settings' quality knobs on a small thread pool.

    zlib, libjpeg and libwebp release the GIL, so threads overlap the encodes of a batch. With fewer images
    than threads (a lone request), each PNG is deflated in row bands across the threads instead.
    """

    def __init__(self, settings: EngineSettings):
        self._settings = settings
        self.threads = settings.encode_threads or min(8, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="encode")

    def encode_one(self, pixels: np.ndarray, fmt: str, parts: int = 1, text: str | None = None) -> bytes:
        """One image file; ``text`` (handler/metadata.py's infotext) goes inside it when given."""
        settings = self._settings
        if fmt == "png" and settings.png_encoder == "fast":
            parts = min(parts, max(1, pixels.nbytes // _MIN_BAND_BYTES))
            return encode_png(pixels, settings.png_compress_level, parts, self._pool.map if parts > 1 else None,
                              png_text(text) if text is not None else None)
        image = Image.fromarray(pixels)
        buffer = io.BytesIO()
        if fmt == "png":
            info = None
            if text is not None:
                info = PngInfo()
                for keyword, value in png_text(text).items():
                    info.add_text(keyword, value)
            image.save(buffer, format="PNG", compress_level=settings.png_compress_level, pnginfo=info)
        elif fmt in ("jpeg", "webp"):
            quality = settings.jpeg_quality if fmt == "jpeg" else settings.webp_quality
            extra = {"exif": exif(text)} if text is not None else {}
            image.save(buffer, format=fmt.upper(), quality=quality, **extra)
        else:
            raise ValueError(f"unknown output format {fmt!r}")
        return buffer.getvalue()

    def per_image(self, formats: Sequence[str]) -> bool:
        """Whether images in these formats (one entry per image of a batch) are best encoded one per
        thread, each as soon as it is handed over; otherwise (a lone image, or fewer fast PNGs than
        threads) each is encoded when claimed, spread over the pool in row bands."""
        fast_png = self._settings.png_encoder == "fast" and all(fmt == "png" for fmt in formats)
        return len(formats) > 1 and not (fast_png and len(formats) < self.threads)

    def hand_over(self, pixels: np.ndarray, fmt: str, now: bool, text: str | None = None) -> Claim:
        """Take one image (and the ``text`` to write into it, if any); ``now`` starts encoding it on the pool
        at once (``per_image``), so it overlaps whatever the caller does next. The claim returns its bytes,
        or the exception that encoding raised, so one bad image does not cost the others theirs."""
        if now:
            return self._pool.submit(_capture, self.encode_one, pixels, fmt, 1, text).result
        # From the claiming thread, the PNG spread over the pool (never nested in it).
        return partial(_capture, self.encode_one, pixels, fmt, self.threads, text)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _capture(function, *args) -> bytes | Exception:
    try:
        return function(*args)
    except Exception as exc:  # handed back to the caller, which answers that request alone
        return exc
