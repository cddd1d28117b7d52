"""Memory housekeeping (handler/memory.py): which errors mean the device ran out of memory, and giving memory
back."""

from __future__ import annotations

import pytest
import torch

from handler.memory import is_out_of_memory, release_device_cache, release_free_memory


@pytest.mark.parametrize("error, out_of_memory", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (torch.cuda.OutOfMemoryError("CUDA out of memory"), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (MemoryError(), False),  # the host's memory: not a request that is too big for the device
    (ValueError("MPS backend out of memory"), False),
])
def test_what_counts_as_out_of_device_memory(error, out_of_memory):
    assert is_out_of_memory(error) is out_of_memory


@pytest.mark.parametrize("device, emptied", [("cpu", []), ("cuda", ["cuda"]), ("mps", ["mps"])])
def test_the_cache_given_back_is_the_devices_own(monkeypatch, device, emptied):
    """After an out-of-memory error the allocator of that device, and only that one, hands its cached
    blocks back; a CPU has no such cache."""
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("cuda"))
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: calls.append("mps"))
    release_device_cache(torch.device(device))
    assert calls == emptied


def test_trimming_the_heap_says_whether_the_c_library_can(monkeypatch):
    import handler.memory as memory

    assert release_free_memory() in (True, False)
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert release_free_memory() is False
