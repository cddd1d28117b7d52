"""TorchServe as this project starts it: the command, the environment, and two ways to run it.

- :class:`LocalTorchServe`: a foreground child process group on free loopback ports with its own
  folders (tests, benchmark, soak); it ends with its owner.
- :func:`start_background`: the server ``make serve`` leaves running on config.properties' ports, found
  and stopped later through TorchServe's own pid file (``torchserve --stop``).

Both run config.properties with only server-specific keys overridden (sdturbo_ops.torchserve_config),
the readiness plugin, and a state folder that says when the model is ready (sdturbo_ops.readiness).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdturbo_ops import readiness
from sdturbo_ops.management import model_workers
from sdturbo_ops.paths import CONFIG_PROPERTIES, MODEL_NAME, PLUGINS_DIR
from sdturbo_ops.processes import free_port, pid_alive, stop_process_group
from sdturbo_ops.torchserve_config import management_address, write_properties
from sdturbo_ops.wait_ready import Watch, wait_ready

# TorchServe's launcher keeps the Java frontend's pid here (ts/model_server.py); `torchserve --stop` reads it.
PID_FILE_NAME = ".model_server.pid"
FRONTEND_CLASS = "org.pytorch.serve.ModelServer"


def require_absolute(**paths: Path | None) -> None:
    """Refuse a relative path bound for TorchServe or its workers.

    TorchServe starts each worker in the model's folder, so a relative state folder written by a worker
    and read by the waiter name two different places (`make demo` once waited 300 s for files that were
    written elsewhere). The CLIs make their path options absolute as they parse them
    (sdturbo_ops.cli.absolute_path); this is the check that nothing relative slips past them.

    Raises:
        ValueError: naming the first relative path.
    """
    for name, path in paths.items():
        if path is not None and not Path(path).is_absolute():
            raise ValueError(f"{name}={path} is relative: TorchServe's workers run in the model's folder, where "
                             "it would name another place; pass an absolute path")


def torchserve_command(config: Path, *, foreground: bool, model_store: Path | None = None,
                       models: str | None = None, plugins: Path | None = None) -> list[str]:
    """TorchServe's own launcher (what the ``torchserve`` command runs) with this interpreter."""
    require_absolute(config=config, model_store=model_store, plugins=plugins)
    command = [sys.executable, "-m", "ts.model_server", "--start", "--ncs", "--ts-config", str(config)]
    command += ["--foreground"] if foreground else []
    command += ["--model-store", str(model_store)] if model_store else []
    command += ["--models", models] if models else []
    command += ["--plugins-path", str(plugins)] if plugins else []
    return command


def torchserve_env(log_dir: Path, state_dir: Path, tmp_dir: Path | None = None, extra=None) -> dict[str, str]:
    """The environment of a server: its log folder, its workers' state folder and, for a server that must
    not share TorchServe's pid file and unpacked archives with others, a TMPDIR of its own."""
    require_absolute(log_dir=log_dir, state_dir=state_dir, tmp_dir=tmp_dir)
    env = {**os.environ, "LOG_LOCATION": str(log_dir), "METRICS_LOCATION": str(log_dir),
           readiness.STATE_DIR_ENV: str(state_dir)}
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    return {**env, **(extra or {})}


class LocalTorchServe:
    """TorchServe serving ``models`` from ``store``, with its own TMPDIR, logs, state and ports under ``workdir``."""

    def __init__(self, store: Path, workdir: Path, models: str = f"{MODEL_NAME}={MODEL_NAME}", extra_env=None,
                 extra_properties: dict[str, str] | None = None):
        self.started_at = time.monotonic()
        self.launched_at = time.time()  # wall clock, comparable with the handler's logged startup timings
        self.ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc", "grpc_mgmt")}
        self.url = f"http://127.0.0.1:{self.ports['inference']}"
        self.management_url = f"http://127.0.0.1:{self.ports['management']}"
        self.workdir = Path(workdir)
        self.logs, self.state_dir, tmp = self.workdir / "logs", self.workdir / "state", self.workdir / "tmp"
        for folder in (self.logs, self.state_dir, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        config = write_properties(self.workdir / "config.properties", {
            "inference_address": self.url,
            "management_address": self.management_url,
            "metrics_address": f"http://127.0.0.1:{self.ports['metrics']}",
            "grpc_inference_port": self.ports["grpc"],
            "grpc_management_port": self.ports["grpc_mgmt"],
            "model_store": store,
            "load_models": None,  # --models names them
            "plugins_path": PLUGINS_DIR,
            **(extra_properties or {}),
        }, why="a server on free loopback ports with folders of its own")
        self.output_path = self.workdir / "torchserve.out"
        self._output = open(self.output_path, "wb")
        self.process = subprocess.Popen(
            torchserve_command(config, foreground=True, models=models),
            env=torchserve_env(self.logs, self.state_dir, tmp, extra_env),
            stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def watch(self, model: str = MODEL_NAME) -> Watch:
        return Watch(self.state_dir, self.management_url, model, self.logs,
                     server_alive=lambda: self.process.poll() is None,
                     server_output=lambda: self.output_path.read_text(errors="replace"))

    def workers(self, model: str = MODEL_NAME) -> list[dict]:
        return model_workers(self.management_url, model)

    def readiness(self) -> readiness.Readiness:
        return readiness.read(self.state_dir)

    def wait_ready(self, timeout: float = 180, model: str = MODEL_NAME) -> float:
        """Block until the model is ready (loaded and warmed up); returns seconds since the launch.

        Raises:
            sdturbo_ops.wait_ready.NotReady (a RuntimeError): the model failed to load, is not registered,
                its worker died, or TorchServe exited; TimedOut (also a TimeoutError) after ``timeout``.
        """
        wait_ready(self.watch(model), timeout)
        return time.monotonic() - self.started_at

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log"))]
        return "".join(parts) + self.output_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process)
        self._output.close()


def pid_file() -> Path:
    """Where ``torchserve --start`` records its server and ``--stop`` finds it: one per TMPDIR."""
    return Path(tempfile.gettempdir()) / PID_FILE_NAME


def running_background_server() -> int | None:
    """The pid of a TorchServe started with ``torchserve --start`` with this TMPDIR (its pid file), if it runs."""
    try:
        pid = int(pid_file().read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if FRONTEND_CLASS.encode() in cmdline and pid_alive(pid) else None


def stop_background() -> None:
    """Stop the server :func:`start_background` started, the way `make stop` does (TorchServe's own
    ``--stop``, which finds it through its pid file and waits for it). Nothing when it is already gone: a
    second ``--stop`` racing a user's `make stop` would delete the pid file under it (its stop then fails)."""
    if running_background_server() is None:
        return
    subprocess.run([sys.executable, "-m", "ts.model_server", "--stop", "--foreground"], capture_output=True,
                   timeout=90)


def start_background(store: Path, models: str, log_dir: Path, state_dir: Path,
                     config: Path = CONFIG_PROPERTIES, plugins: Path = PLUGINS_DIR) -> Watch:
    """Start TorchServe in the background, as ``torchserve --start`` does, with its output in
    ``log_dir/torchserve.out`` (not the terminal); returns how to watch it get ready.

    Raises:
        RuntimeError: TorchServe's launcher refused to start (its own message).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(state_dir, ignore_errors=True)  # a previous server's files would say "ready" too early
    state_dir.mkdir(parents=True)
    output_path = log_dir / "torchserve.out"
    # Appended to, never truncated: a server started by someone else may still be writing to it.
    with open(output_path, "ab") as output:
        start = output.tell()
        # A session of its own: the server outlives this command and the terminal it ran in.
        launcher = subprocess.run(
            torchserve_command(config, foreground=False, model_store=store, models=models, plugins=plugins),
            env=torchserve_env(log_dir, state_dir), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    if launcher.returncode != 0:
        with open(output_path, "rb") as output:
            output.seek(start)
            said = output.read(4000).decode(errors="replace").strip()
        raise RuntimeError(said or f"TorchServe's launcher exited with {launcher.returncode}")
    pid = running_background_server()
    return Watch(state_dir, management_address(config), models.split("=", 1)[0], log_dir,
                 server_alive=lambda: pid is not None and pid_alive(pid),
                 server_output=lambda: output_path.read_text(errors="replace"))

