"""Give freed heap memory back to the OS between batches (glibc only).

Each batch allocates and frees tens of MB of host buffers (pixels, PNG bytes, base64, JSON) from several
threads. glibc keeps freed chunks in per-thread arenas, so a long-running worker's resident memory
creeps up although nothing leaks. ``malloc_trim(0)`` after a batch returns those pages; it takes well
under a millisecond to a few ms, against hundreds of ms for the batch itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018  (only glibc has it: musl, macOS and Windows do not)
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Trim the heap; returns whether the C library supports it."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
