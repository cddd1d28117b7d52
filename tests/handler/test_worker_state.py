"""Per-worker state files (handler/worker_state.py): what a worker writes is what the readiness reader
reads; nothing without a state folder; a report replaced whole; the busy marker never left behind."""

from __future__ import annotations

import json
import os

import pytest

from handler import worker_state
from sdturbo_ops import readiness


def test_what_the_handler_writes_is_what_the_reader_reads(tmp_path):
    files = worker_state.WorkerStateFiles(tmp_path)
    assert not readiness.read(tmp_path).ready
    with files.busy():
        assert readiness.busy_workers(tmp_path) == [os.getpid()]
    assert readiness.busy_workers(tmp_path) == []
    files.report("failed", "OSError: no weights")
    assert readiness.read(tmp_path).failure == "OSError: no weights"
    files.report("ready")
    assert readiness.read(tmp_path).ready


def test_without_a_state_folder_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(worker_state.STATE_DIR_ENV, raising=False)
    files = worker_state.WorkerStateFiles.from_environment()
    files.report("ready")
    with files.busy():
        pass
    assert files.directory is None and list(tmp_path.iterdir()) == []


def test_a_report_is_one_json_file_per_worker_replaced_whole(tmp_path):
    files = worker_state.WorkerStateFiles(tmp_path / "state", pid=4242)
    files.report("failed", "OSError: no weights")
    files.report("ready")
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["4242.json"]  # no .tmp left behind
    assert json.loads((tmp_path / "state" / "4242.json").read_text()) == {"state": "ready", "pid": 4242}


def test_the_busy_marker_goes_even_when_the_batch_fails(tmp_path):
    files = worker_state.WorkerStateFiles(tmp_path, pid=7)
    with pytest.raises(RuntimeError), files.busy():
        assert (tmp_path / "7.busy").is_file()
        raise RuntimeError("batch failed")
    assert not (tmp_path / "7.busy").exists()
