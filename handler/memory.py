"""Memory housekeeping: recognising a device out-of-memory error, and giving freed memory back.

Each batch allocates and frees tens of MB of host buffers (pixels, PNG bytes, base64, JSON) from several
threads. glibc keeps freed chunks in per-thread arenas, so a long-running worker's resident memory
creeps up although nothing leaks. ``malloc_trim(0)`` after a batch returns those pages; it takes well
under a millisecond to a few ms, against hundreds of ms for the batch itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

# torch raises torch.OutOfMemoryError (torch.cuda.OutOfMemoryError is the same class) for CUDA; the MPS
# backend raises a plain RuntimeError whose message starts like this.
_MPS_OUT_OF_MEMORY = "MPS backend out of memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device ran out of memory (CUDA or MPS): the request was too big, the
    server is fine."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and _MPS_OUT_OF_MEMORY in str(exc)
    )


def release_device_cache(device: torch.device) -> None:
    """Hand the allocator's cached blocks back after an out-of-memory error, so a retry with less work
    starts from the memory that is really free."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


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
