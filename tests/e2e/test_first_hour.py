"""A newcomer's first hour, as they run it: the make targets, the local server they leave running, and
what the tools say when something is missing or wrong.

The make targets use config.properties' fixed ports (8080-8082), so they run in a network namespace of
their own (``unshare --net``: root, as the image test; CI runs as root), with their own TMPDIR (where
TorchServe keeps its pid file), log and state folders.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from PIL import Image

from sdturbo_ops.processes import pid_alive
from sdturbo_ops.wait_ready import NotReady
from tests.support.helpers import (
    PYTHON, REPO, LocalTorchServe, build_archive, get, http, private_network, run_script, wait_until,
)

pytestmark = pytest.mark.integration


def test_make_serve_tiny_predict_and_stop_in_a_fresh_checkout(tmp_path):
    """What the README's first steps promise: `make serve` without an archive says what to do at once;
    `make serve-tiny` serves the offline model and returns once it is warm, its logs in the log folder and
    not the terminal; /ping is the plugin's (it tells draining apart); `make demo` beside a running server
    says so; `make predict` writes an image; `make stop` stops it; `make demo` then works."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "empty-store").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    folders = [f"SERVE_LOGS={tmp_path / 'logs'}", f"SERVE_STATE={tmp_path / 'state'}"]

    with private_network() as inside:
        def make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
            # capture_output: a server that kept the terminal's output would keep this pipe open and hang it
            return subprocess.run([*inside, "make", "--no-print-directory", *args, *folders], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=timeout)

        started = time.monotonic()
        nothing = make("serve", f"MODEL_STORE={tmp_path / 'empty-store'}", timeout=60)
        assert nothing.returncode != 0 and time.monotonic() - started < 30, nothing.stderr
        assert "make serve-tiny" in nothing.stderr and "make mar" in nothing.stderr

        served = make("serve-tiny")
        try:
            assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-2000:]
            assert "sdturbo is ready" in served.stdout
            terminal = served.stdout + served.stderr
            assert "MODEL_LOG" not in terminal and "org.pytorch.serve" not in terminal, terminal[-2000:]
            assert (tmp_path / "logs" / "ts_log.log").is_file() and (tmp_path / "logs" / "torchserve.out").is_file()

            assert get(inside, "http://127.0.0.1:8080/ping")[0] == 200
            (tmp_path / "state" / "draining").touch()  # only the readiness plugin reads the state folder
            status, body = get(inside, "http://127.0.0.1:8080/ping")
            assert status == 503 and "draining" in body
            (tmp_path / "state" / "draining").unlink()

            again = make("demo", timeout=120)
            assert again.returncode != 0 and "already running" in again.stderr and "make stop" in again.stderr

            out = tmp_path / "cat.png"
            predicted = make("predict", "PROMPT=a \"quoted\" cat; it's `fine`", f"OUT={out}", "SEED=3")
            assert predicted.returncode == 0, predicted.stderr
            assert Image.open(out).format == "PNG" and Image.open(out).size == (512, 512)
            unsaid = make("predict", "PROMPT=")
            assert unsaid.returncode != 0 and "PROMPT=" in unsaid.stderr
        finally:
            stopped = make("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert not list((tmp_path / "tmp").glob(".model_server.pid"))

        demo = make("demo")
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert Image.open(REPO / "demo.png").format == "PNG"
        assert not list((tmp_path / "tmp").glob(".model_server.pid")), "make demo leaves no server behind"


def test_a_second_server_beside_the_first_never_touches_it(tmp_path):
    """Issue 35: a second start once emptied the first server's state folder and then failed on TorchServe's
    gRPC ports (not in config.properties), leaving the first answering /ping with 503 for good. Now a start
    that would share a state folder or a port with a running server is refused before it changes anything,
    and one setting, PORT, gives a second server ports and folders of its own: two real TorchServes up."""
    for name in ("tmp", "other-tmp"):
        (tmp_path / name).mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    other_shell = {**env, "TMPDIR": str(tmp_path / "other-tmp")}  # a second terminal with a TMPDIR of its own
    first = [f"SERVE_LOGS={tmp_path / 'logs'}", f"SERVE_STATE={tmp_path / 'state'}"]
    second_home = REPO / "build" / "servers" / "8090"

    with private_network() as inside:
        def make(*args: str, environ=env, timeout: float = 300) -> subprocess.CompletedProcess:
            return subprocess.run([*inside, "make", "--no-print-directory", *args], cwd=REPO, env=environ,
                                  capture_output=True, text=True, timeout=timeout)

        def healthy(port: int) -> bool:
            status, body = get(inside, f"http://127.0.0.1:{port}/ping")
            return status == 200 and '"Healthy"' in body

        served = make("serve-tiny", *first)
        try:
            assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-2000:]
            state_files = sorted(p.name for p in (tmp_path / "state").iterdir())

            started = time.monotonic()
            shared_state = make("serve-tiny", *first, environ=other_shell, timeout=60)
            assert shared_state.returncode != 0 and time.monotonic() - started < 30, shared_state.stderr
            assert "state folder of a running TorchServe" in shared_state.stderr and "PORT=" in shared_state.stderr
            shared_ports = make("serve-tiny", f"SERVE_LOGS={tmp_path / 'logs-2'}", f"SERVE_STATE={tmp_path / 'st-2'}",
                                environ=other_shell, timeout=60)
            assert shared_ports.returncode != 0 and "8080 (inference_address)" in shared_ports.stderr, \
                shared_ports.stderr
            assert "7070 (grpc_inference_port)" in shared_ports.stderr and "PORT=" in shared_ports.stderr
            assert not (tmp_path / "st-2").exists(), "a refused start changed nothing"
            assert sorted(p.name for p in (tmp_path / "state").iterdir()) == state_files
            assert healthy(8080), "the refused starts left the first server as it was"

            beside = make("serve-tiny", "PORT=8090")
            try:
                assert beside.returncode == 0, beside.stdout[-2000:] + beside.stderr[-2000:]
                assert healthy(8080) and healthy(8090)
                out = tmp_path / "beside.png"
                predicted = make("predict", "PORT=8090", "PROMPT=a second lighthouse", f"OUT={out}")
                assert predicted.returncode == 0 and Image.open(out).size == (512, 512), predicted.stderr
                # what is its own: TorchServe's pid file and its workers' sockets, its logs and state
                assert (second_home / "tmp" / ".model_server.pid").is_file()
                assert list((second_home / "tmp").glob(".ts.sock.*")) and list((second_home / "state").glob("*.json"))
            finally:
                stopped = make("stop", "PORT=8090", timeout=120)
            assert stopped.returncode == 0, stopped.stderr
            assert not (second_home / "tmp" / ".model_server.pid").exists()
            assert healthy(8080), "stopping the second server left the first as it was"
        finally:
            make("stop", *first, timeout=120)
        assert not list((tmp_path / "tmp").glob(".model_server.pid"))


# ------------------------------------------------------------------ waiting: ready, or why not, fast
def broken_handler_archive(tmp_path, tiny_sd_dir):
    """An archive whose handler dies at import: TorchServe restarts its worker with back-off, forever."""
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    with open(archive / "torchserve_handler.py", "a") as handler:
        handler.write('\nraise SystemExit("boom at import")\n')
    return tmp_path / "store"


def corrupt_weights_archive(tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    for weights in (archive / "model" / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return tmp_path / "store"


def empty_store(tmp_path, _tiny_sd_dir):
    (tmp_path / "store").mkdir()
    return tmp_path / "store"


@pytest.mark.parametrize("store, reason", [
    (empty_store, "ModelNotFoundException: Model not found at: sdturbo"),
    (broken_handler_archive, "boom at import"),
    (corrupt_weights_archive, "failed to load: "),
], ids=["not-registered", "worker-dies", "load-fails"])
def test_wait_ready_fails_fast_with_torchserves_reason(tmp_path, tiny_sd_dir, store, reason):
    server = LocalTorchServe(store(tmp_path, tiny_sd_dir), tmp_path / "ts", extra_env={"SDTURBO_DEVICE": "cpu"})
    try:
        started = time.monotonic()
        waited = run_script("wait_ready.py", "--management-url", server.management_url, "--state-dir",
                            str(server.state_dir), "--log-dir", str(server.logs), "--timeout", "120", timeout=150)
        took = time.monotonic() - started
        with pytest.raises(NotReady, match=re.escape(reason)):
            server.wait_ready(timeout=60)
    finally:
        server.stop()
    assert waited.returncode == 1 and took < 30, (waited.returncode, took, waited.stderr)
    assert reason in waited.stderr and waited.stderr.count("\n") <= 2, waited.stderr


def test_a_server_in_a_deep_folder_still_gets_ready(tmp_path, tiny_sd_dir):
    """A worker listens on a Unix socket in the frontend's temporary folder, whose path Linux caps at 107
    bytes: a server whose work folder is deep (a benchmark's output under pytest's tmp_path) once had every
    worker die at bind, restarted forever, and `bench.py` hung until CI's timeout."""
    deep = tmp_path / ("d" * 60)
    server = LocalTorchServe(build_archive(tiny_sd_dir, tmp_path / "store").parent, deep / "ts",
                             extra_env={"SDTURBO_DEVICE": "cpu"})
    try:
        server.wait_ready(timeout=120)
        assert http("GET", f"{server.url}/ping", content_type=None).status == 200
    finally:
        server.stop()


def test_ping_is_unhealthy_when_the_model_failed_to_load_locally_too(tmp_path, tiny_sd_dir, plugins_dir):
    """TorchServe's own /ping says Healthy here; every local server this project starts has the plugin."""
    server = LocalTorchServe(corrupt_weights_archive(tmp_path, tiny_sd_dir), tmp_path / "ts",
                             extra_env={"SDTURBO_DEVICE": "cpu"})
    try:
        with pytest.raises(NotReady):
            server.wait_ready(timeout=120)
        ping = http("GET", f"{server.url}/ping", content_type=None)
    finally:
        server.stop()
    assert ping.status == 503 and "failed to load" in ping.json()["reason"]


def test_a_failed_start_stops_the_server_it_started(tmp_path, tiny_sd_dir, plugins_dir):
    """local_torchserve.py start (make serve) with a handler that cannot even import: the reason in
    seconds, and no server left behind to block the next start."""
    store = broken_handler_archive(tmp_path, tiny_sd_dir)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    with private_network() as inside:
        result = subprocess.run([*inside, PYTHON, str(REPO / "scripts" / "local_torchserve.py"), "start", "--store",
                                 str(store), "--log-dir", str(tmp_path / "logs"), "--state-dir", str(tmp_path / "st")],
                                env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "boom at import" in result.stderr, result.stderr
    pid_file = tmp_path / "tmp" / ".model_server.pid"
    assert not pid_file.exists() or not pid_alive(int(pid_file.read_text()))


def test_make_stop_during_a_waiting_start_says_the_server_was_stopped(tmp_path, tiny_sd_dir, plugins_dir):
    """`make stop` while `make serve` waits: TorchServe ends its workers before it exits, which once read as
    "worker died while loading"."""
    store = tmp_path / "store"
    archive = build_archive(tiny_sd_dir, store)
    with open(archive / "torchserve_handler.py", "a") as handler:
        handler.write("\nimport time\ntime.sleep(120)  # a load that is still going when the server is stopped\n")
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    with private_network() as inside:
        start = subprocess.Popen([*inside, PYTHON, str(REPO / "scripts" / "local_torchserve.py"), "start", "--store",
                                  str(store), "--log-dir", str(tmp_path / "logs"), "--state-dir", str(tmp_path / "st")],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            log = tmp_path / "logs" / "model_log.log"
            wait_until(lambda: log.is_file() and "Torch worker started" in log.read_text(), 60, what="a worker")
            stopped = subprocess.run([*inside, PYTHON, "-m", "ts.model_server", "--stop", "--foreground"], env=env,
                                     capture_output=True, text=True, timeout=120)
            _, said = start.communicate(timeout=60)
        finally:
            start.kill()
    assert stopped.returncode == 0, stopped.stderr
    assert start.returncode == 1 and "TorchServe stopped before sdturbo was ready" in said, said
    assert "died while loading" not in said
