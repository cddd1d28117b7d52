"""Encode generated pixels (uint8 HxWx3 arrays) as PNG/JPEG/WebP bytes, in parallel."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from handler.settings import EngineSettings

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ImageEncoder:
    """Encodes images with the settings' quality knobs on a small thread pool.

    Pillow releases the GIL inside zlib/libjpeg/libwebp, so threads overlap the encodes of a batch.
    """

    def __init__(self, settings: EngineSettings):
        self._settings = settings
        threads = settings.encode_threads or min(8, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="encode")

    def encode_one(self, pixels: np.ndarray, fmt: str) -> bytes:
        image = Image.fromarray(pixels)
        buffer = io.BytesIO()
        if fmt == "png":
            image.save(buffer, format="PNG", compress_level=self._settings.png_compress_level)
        elif fmt == "jpeg":
            image.save(buffer, format="JPEG", quality=self._settings.jpeg_quality)
        elif fmt == "webp":
            image.save(buffer, format="WEBP", quality=self._settings.webp_quality)
        else:
            raise ValueError(f"unknown output format {fmt!r}")
        return buffer.getvalue()

    def encode_many(self, items: Sequence[tuple[np.ndarray, str]]) -> list[bytes]:
        """Encode ``(pixels, format)`` pairs, preserving order."""
        if len(items) <= 1:
            return [self.encode_one(pixels, fmt) for pixels, fmt in items]
        return list(self._pool.map(lambda item: self.encode_one(*item), items))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
