"""One definition of "ready": the workers' state files, read by sdturbo_ops.readiness (every Python caller)
and by the /ping plugin (plugins/readiness), which must give the same answer for the same folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from handler import worker_state
from sdturbo_ops import readiness
from tests.support.helpers import REPO, http


def dead_pid() -> int:
    """The pid of a process that has exited (pids are not reused that quickly)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


LIVE = os.getpid()


DEAD = dead_pid()


# name -> (files in the folder: name -> content, the answer)
FOLDERS = {
    "empty": ({}, readiness.LOADING_REASON),
    "ready": ({f"{LIVE}.json": {"state": "ready"}}, None),
    "failed": ({f"{LIVE}.json": {"state": "failed", "reason": "OSError: no weights"}}, readiness.FAILED_REASON),
    "ready beats failed": ({f"{LIVE}.json": {"state": "ready"}, "1.json": {"state": "failed"}}, None),
    "a dead worker's ready counts for nothing": ({f"{DEAD}.json": {"state": "ready"}}, readiness.LOADING_REASON),
    "a dead worker's failure counts for nothing": ({f"{DEAD}.json": {"state": "failed"}, f"{LIVE}.json": {}},
                                                   readiness.LOADING_REASON),
    "draining wins": ({f"{LIVE}.json": {"state": "ready"}, "draining": ""}, readiness.DRAINING_REASON),
    "a reason that says ready is no state": (
        {f"{LIVE}.json": {"state": "failed", "reason": 'bad "state": "ready" text'}}, readiness.FAILED_REASON),
    "not a state file": ({"ready.json": {"state": "ready"}, f"{LIVE}.tmp": {"state": "ready"}},
                         readiness.LOADING_REASON),
}


def make_folder(root, name: str, files: dict):
    folder = root / re.sub(r"\W+", "-", name)
    folder.mkdir()
    for file, content in files.items():
        (folder / file).write_text(json.dumps(content) if isinstance(content, dict) else content)
    return folder


@pytest.mark.parametrize("name", FOLDERS)
def test_the_rule(tmp_path, name):
    files, problem = FOLDERS[name]
    state = readiness.read(make_folder(tmp_path, name, files))
    assert (state.ready, state.problem) == (problem is None, problem)


def test_the_plugin_follows_the_same_rule(tmp_path, plugins_dir):
    """plugins/readiness's StateFolder (what /ping consults) over the same folders, in one JVM."""
    folders = [make_folder(tmp_path, name, files) for name, (files, _) in FOLDERS.items()]
    result = subprocess.run(["java", "-cp", str(plugins_dir / "readiness-ping.jar"), "org.sdturbo.serve.StateFolder",
                             *map(str, folders)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = [f"not ready: {problem}" if problem else "ready" for _, problem in FOLDERS.values()]
    assert result.stdout.splitlines() == expected
    assert [("ready" if readiness.read(f).ready else f"not ready: {readiness.read(f).problem}") for f in folders] \
        == expected


def test_a_dead_workers_busy_marker_is_not_work_in_flight(tmp_path):
    (tmp_path / f"{DEAD}.busy").touch()
    (tmp_path / f"{LIVE}.busy").touch()
    assert readiness.busy_workers(tmp_path) == [LIVE]


def test_writer_reader_and_plugin_name_the_same_folder():
    java = (REPO / "plugins" / "readiness" / "src" / "main" / "java" / "org" / "sdturbo" / "serve"
            / "ReadinessPing.java").read_text()
    assert worker_state.STATE_DIR_ENV == readiness.STATE_DIR_ENV
    assert f'STATE_DIR_ENV = "{readiness.STATE_DIR_ENV}"' in java


@pytest.mark.integration
def test_ping_and_the_reader_agree_on_a_running_server(torchserve):
    """The real server's /ping (the plugin) and the reader over its real folder, as the folder changes."""
    def both():
        reply = http("GET", f"{torchserve.url}/ping", content_type=None)
        state = torchserve.readiness()
        return reply.status, (reply.json().get("reason") if reply.status != 200 else None), state.ready, state.problem

    assert both() == (200, None, True, None)
    (torchserve.state_dir / f"{DEAD}.json").write_text(json.dumps({"state": "failed"}))
    try:
        assert both() == (200, None, True, None)
        (torchserve.state_dir / "draining").touch()
        assert both() == (503, readiness.DRAINING_REASON, False, readiness.DRAINING_REASON)
    finally:
        (torchserve.state_dir / "draining").unlink(missing_ok=True)
        (torchserve.state_dir / f"{DEAD}.json").unlink()
    assert both() == (200, None, True, None)
