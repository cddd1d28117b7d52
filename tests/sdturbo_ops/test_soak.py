"""The soak test's measurements (sdturbo_ops/soak.py): a process's resident memory, read from /proc."""

from __future__ import annotations

import os

import pytest

from sdturbo_ops.soak import rss_mib


def test_resident_memory_grows_with_what_the_process_holds():
    before = rss_mib(os.getpid())
    held = bytearray(64 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])  # touch every page
    assert rss_mib(os.getpid()) - before >= 48
    del held


def test_a_gone_process_has_no_memory_to_read():
    with pytest.raises(FileNotFoundError):
        rss_mib(2**22 + 12345)
