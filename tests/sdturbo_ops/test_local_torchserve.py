"""A TorchServe of this checkout (sdturbo_ops/local_torchserve.py): the launcher's command and a server's
environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdturbo_ops import readiness
from sdturbo_ops.local_torchserve import (
    OWNER_FILE, SocketPathTooLong, place_on_port, state_folder_user, torchserve_command, torchserve_env,
)
from sdturbo_ops.processes import MAX_SOCKET_PATH
from sdturbo_ops.paths import SERVERS_DIR


def test_the_command_is_torchserves_launcher_with_this_interpreter():
    command = torchserve_command(Path("/c/config.properties"), foreground=True, model_store=Path("/store"),
                                 models="sdturbo=sdturbo", plugins=Path("/plugins"))
    assert command == [sys.executable, "-m", "ts.model_server", "--start", "--ncs", "--ts-config",
                       "/c/config.properties", "--foreground", "--model-store", "/store", "--models", "sdturbo=sdturbo",
                       "--plugins-path", "/plugins"]
    assert torchserve_command(Path("/c"), foreground=False)[-2:] == ["--ts-config", "/c"]


def test_a_servers_environment_names_its_logs_state_and_own_tmpdir(monkeypatch):
    monkeypatch.setenv("TMPDIR", "/shared-tmp")
    env = torchserve_env(Path("/logs"), Path("/state"), Path("/own-tmp"), {"SDTURBO_DEVICE": "cpu"})
    assert (env["LOG_LOCATION"], env["METRICS_LOCATION"], env[readiness.STATE_DIR_ENV]) == ("/logs", "/logs", "/state")
    assert env["TMPDIR"] == env["TEMP"] == "/own-tmp" and env["SDTURBO_DEVICE"] == "cpu"  # TEMP: the frontend's
    assert torchserve_env(Path("/logs"), Path("/state"))["TMPDIR"] == "/shared-tmp"


def test_a_temporary_folder_too_deep_for_a_workers_socket_is_refused_before_anything_starts():
    """A worker's socket, <TEMP>/.ts.sock.<port>, must fit a Unix socket's 107 bytes: a deeper TEMP would
    have every worker die at bind while the frontend restarts it forever."""
    fits = Path("/" + "t" * (MAX_SOCKET_PATH - len("/.ts.sock.65535") - 1))
    assert torchserve_env(Path("/logs"), Path("/state"), fits)["TEMP"] == str(fits)
    with pytest.raises(SocketPathTooLong, match=r"too deep for a worker's Unix socket .*107 bytes.*TMPDIR"):
        torchserve_env(Path("/logs"), Path("/state"), fits / "x")


def test_a_relative_path_never_reaches_torchserve_or_its_workers():
    """The workers run in the model's folder: a relative state folder there is another folder than the
    waiter's. The CLIs resolve their paths as they parse them; anything that slips past is refused here."""
    with pytest.raises(ValueError, match="state_dir=build/serve-state is relative"):
        torchserve_env(Path("/repo/logs"), Path("build/serve-state"))
    with pytest.raises(ValueError, match="model_store=build/demo-store is relative"):
        torchserve_command(Path("/repo/config.properties"), foreground=False, model_store=Path("build/demo-store"))
    env = torchserve_env(Path("/repo/logs"), Path("/repo/build/serve-state"), Path("/repo/tmp"))
    assert all(Path(env[name]).is_absolute() for name in ("SDSERVE_STATE_DIR", "LOG_LOCATION", "TMPDIR"))


def test_a_server_on_a_port_of_its_own_keeps_everything_in_its_own_folder():
    place = place_on_port(8090)
    assert {place.config.parent, place.log_dir.parent, place.state_dir.parent, place.tmp_dir.parent} == {
        SERVERS_DIR / "8090"}


def test_a_state_folder_is_in_use_only_while_its_server_or_a_worker_of_it_runs(tmp_path):
    """Files of processes that are not TorchServe's (a pid reused after a reboot) do not block a start."""
    assert state_folder_user(tmp_path) is None
    (tmp_path / OWNER_FILE).write_text(f"{os.getpid()}\n")  # alive, but not a TorchServe frontend
    (tmp_path / f"{os.getpid()}.json").write_text('{"state": "ready"}')  # alive, but not a worker
    assert state_folder_user(tmp_path) is None
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "ts/model_service_worker.py"])
    try:
        (tmp_path / f"{worker.pid}.json").write_text('{"state": "ready"}')
        assert state_folder_user(tmp_path) == worker.pid
    finally:
        worker.kill()
        worker.wait()
    assert state_folder_user(tmp_path) is None
