"""Waiting until a server's model is warm (sdturbo_ops/wait_ready.py), from its workers' state files: ready,
failed with the handler's reason, or timed out."""

from __future__ import annotations

import json
import os

import pytest

from sdturbo_ops.processes import free_port
from sdturbo_ops.wait_ready import NotReady, TimedOut, Watch, wait_ready


def watch(state_dir) -> Watch:
    return Watch(state_dir, f"http://127.0.0.1:{free_port()}")  # no management API: state files alone


def report(state_dir, payload):
    state_dir.mkdir(exist_ok=True)
    (state_dir / f"{os.getpid()}.json").write_text(json.dumps({"pid": os.getpid(), **payload}))


def test_a_ready_worker_ends_the_wait(tmp_path):
    report(tmp_path / "state", {"state": "ready"})
    assert 0 <= wait_ready(watch(tmp_path / "state"), timeout=5) < 5


def test_a_failed_load_ends_the_wait_with_its_reason(tmp_path):
    report(tmp_path / "state", {"state": "failed", "reason": "OSError: no weights"})
    with pytest.raises(NotReady, match="failed to load: OSError: no weights"):
        wait_ready(watch(tmp_path / "state"), timeout=5)


def test_nothing_ready_in_time_is_a_timeout(tmp_path):
    (tmp_path / "state").mkdir()
    with pytest.raises(TimedOut):
        wait_ready(watch(tmp_path / "state"), timeout=0.5, interval=0.05)
