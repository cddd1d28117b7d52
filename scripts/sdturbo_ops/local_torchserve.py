"""TorchServe as this project starts it: the command, the environment, and two ways to run it.

- :class:`LocalTorchServe`: a foreground child process group on free loopback ports with its own
  folders (tests, benchmark, soak); it ends with its owner.
- :func:`start_background`: the server ``make serve`` leaves running on config.properties' ports (or, with
  ``PORT=``, on ports and in folders of its own: :func:`place_on_port`), found and stopped later through
  TorchServe's own pid file (``torchserve --stop``).

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
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops import readiness
from sdturbo_ops.management import model_workers
from sdturbo_ops.paths import CONFIG_PROPERTIES, LOG_DIR, MODEL_NAME, PLUGINS_DIR, SERVE_STATE_DIR, SERVERS_DIR
from sdturbo_ops.processes import (
    MAX_SOCKET_PATH, command_line, fits_a_unix_socket, free_port, pid_alive, port_in_use, stop_process_group,
)
from sdturbo_ops.torchserve_config import Listener, management_address, write_properties
from sdturbo_ops.wait_ready import Watch, wait_ready

# TorchServe's launcher keeps the Java frontend's pid here (ts/model_server.py); `torchserve --stop` reads it.
PID_FILE_NAME = ".model_server.pid"
FRONTEND_CLASS = "org.pytorch.serve.ModelServer"
# TorchServe's Python worker (ts/model_service_worker.py): the process that writes <pid>.json.
WORKER_SCRIPT = "model_service_worker.py"
# start_background records the frontend that uses a state folder here (the readiness rule reads only
# <pid>.json, <pid>.busy and draining there, so this file is invisible to /ping).
OWNER_FILE = "server.pid"
# Each worker listens on <the frontend's java.io.tmpdir>/.ts.sock.<9000 + n> (model_log.log names it). A
# longer path than a Unix socket may have kills the worker at bind ("AF_UNIX path too long") and the
# frontend restarts it forever, never ready: the folder is checked before a server starts.
LONGEST_WORKER_SOCKET = ".ts.sock.65535"


class SocketPathTooLong(ValueError):
    """A temporary folder too deep for the workers' Unix sockets."""


def require_socket_room(tmp_dir: Path) -> None:
    """Refuse a frontend temporary folder where a worker's socket path would pass the limit.

    Raises:
        SocketPathTooLong: naming the folder, the limit and the fix.
    """
    longest = Path(tmp_dir) / LONGEST_WORKER_SOCKET
    if not fits_a_unix_socket(longest):
        raise SocketPathTooLong(
            f"{tmp_dir} is too deep for a worker's Unix socket ({len(os.fsencode(longest))} of at most "
            f"{MAX_SOCKET_PATH} bytes for {longest}): point TMPDIR at a shorter folder, such as /tmp")


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
    not share TorchServe's pid file, unpacked archives and worker sockets with others, a temporary folder
    of its own: TMPDIR for the launcher and the workers, TEMP for the Java frontend (the launcher passes it
    on as java.io.tmpdir, where the frontend puts its workers' sockets, /tmp/.ts.sock.<port> otherwise).

    Raises:
        SocketPathTooLong: ``tmp_dir`` is too deep for the workers' sockets.
    """
    require_absolute(log_dir=log_dir, state_dir=state_dir, tmp_dir=tmp_dir)
    if tmp_dir is not None:
        require_socket_room(tmp_dir)
    env = {**os.environ, "LOG_LOCATION": str(log_dir), "METRICS_LOCATION": str(log_dir),
           readiness.STATE_DIR_ENV: str(state_dir)}
    if tmp_dir is not None:
        env["TMPDIR"] = env["TEMP"] = str(tmp_dir)
    return {**env, **(extra or {})}


class LocalTorchServe:
    """TorchServe serving ``models`` from ``store``, with its own TMPDIR, logs, state and ports under ``workdir``
    (the TMPDIR in the caller's when ``workdir`` is too deep for the workers' sockets)."""

    def __init__(self, store: Path, workdir: Path, models: str = f"{MODEL_NAME}={MODEL_NAME}", extra_env=None,
                 extra_properties: dict[str, str] | None = None):
        self.started_at = time.monotonic()
        self.launched_at = time.time()  # wall clock, comparable with the handler's logged startup timings
        self.ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc", "grpc_mgmt")}
        self.url = f"http://127.0.0.1:{self.ports['inference']}"
        self.management_url = f"http://127.0.0.1:{self.ports['management']}"
        self.workdir = Path(workdir)
        self.logs, self.state_dir, self.tmp = self.workdir / "logs", self.workdir / "state", self.workdir / "tmp"
        for folder in (self.logs, self.state_dir):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            require_socket_room(self.tmp)
            self.tmp.mkdir(exist_ok=True)
            self._own_tmp = False
        except SocketPathTooLong:  # a benchmark's output deep under pytest's tmp_path
            self.tmp, self._own_tmp = Path(tempfile.mkdtemp(prefix="sdts-")), True
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
            env=torchserve_env(self.logs, self.state_dir, self.tmp, extra_env),
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
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass(frozen=True)
class Place:
    """What a background server keeps to itself: its properties file, logs, workers' state folder and
    temporary folder (TorchServe's pid file, the workers' sockets; None: the caller's TMPDIR)."""

    config: Path
    log_dir: Path
    state_dir: Path
    tmp_dir: Path | None = None


# The server on config.properties' own ports: logs/, build/serve-state/ and the caller's TMPDIR.
DEFAULT_PLACE = Place(CONFIG_PROPERTIES, LOG_DIR, SERVE_STATE_DIR)


def place_on_port(port: int) -> Place:
    """The folders of the server whose listeners start at ``port`` (`make serve-tiny PORT=8090`): all of it
    under build/servers/<port>/, TMPDIR included, so it shares nothing with any other server."""
    home = SERVERS_DIR / str(port)
    return Place(home / "config.properties", home / "logs", home / "state", home / "tmp")


def pid_file(tmp_dir: Path | None = None) -> Path:
    """Where ``torchserve --start`` records its server and ``--stop`` finds it: one per TMPDIR."""
    return Path(tmp_dir or tempfile.gettempdir()) / PID_FILE_NAME


def _first_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_frontend(pid: int | None) -> bool:
    return pid is not None and FRONTEND_CLASS in command_line(pid) and pid_alive(pid)


def running_background_server(tmp_dir: Path | None = None) -> int | None:
    """The pid of a TorchServe started with ``torchserve --start`` with this TMPDIR (its pid file), if it runs."""
    pid = _first_pid(pid_file(tmp_dir))
    return pid if _is_frontend(pid) else None


def state_folder_user(state_dir: Path) -> int | None:
    """The pid of a running TorchServe that uses ``state_dir``, if one does: the frontend
    :func:`start_background` recorded there, or a live worker whose state file is there (a server started
    by hand with ``SDSERVE_STATE_DIR``)."""
    owner = _first_pid(state_dir / OWNER_FILE)
    if _is_frontend(owner):
        return owner
    workers = (pid for pid in readiness.worker_pids(state_dir) if pid_alive(pid))
    return next((pid for pid in workers if any(arg.endswith(WORKER_SCRIPT) for arg in command_line(pid))), None)


def busy_listeners(wanted: list[Listener]) -> list[Listener]:
    """The listeners among ``wanted`` whose port something already listens on."""
    return [listener for listener in wanted if port_in_use(listener.host, listener.port)]


def torchserve_stop(tmp_dir: Path | None = None, **run_args) -> subprocess.CompletedProcess:
    """TorchServe's own ``--stop`` (what `make stop` runs): it finds the server through the pid file in
    ``tmp_dir`` (None: this process's TMPDIR) and waits for it to exit."""
    env = {**os.environ, "TMPDIR": str(tmp_dir)} if tmp_dir is not None else None
    return subprocess.run([sys.executable, "-m", "ts.model_server", "--stop", "--foreground"], env=env, **run_args)


def stop_background(tmp_dir: Path | None = None) -> None:
    """Stop the server :func:`start_background` started, the way `make stop` does. Nothing when it is
    already gone: a second ``--stop`` racing a user's `make stop` would delete the pid file under it (its
    stop then fails)."""
    if running_background_server(tmp_dir) is None:
        return
    torchserve_stop(tmp_dir, capture_output=True, timeout=90)


def start_background(store: Path, models: str, place: Place = DEFAULT_PLACE,
                     plugins: Path = PLUGINS_DIR) -> Watch:
    """Start TorchServe in the background, as ``torchserve --start`` does, with ``place``'s properties,
    state folder and TMPDIR and its output in ``place.log_dir/torchserve.out`` (not the terminal); returns
    how to watch it get ready. The caller has checked that no running server uses ``place``'s state folder
    (:func:`state_folder_user`): it is emptied here.

    Raises:
        SocketPathTooLong: ``place.tmp_dir`` is too deep for the workers' sockets (before anything changes).
        RuntimeError: TorchServe's launcher refused to start (its own message).
    """
    log_dir, state_dir = place.log_dir, place.state_dir
    env = torchserve_env(log_dir, state_dir, place.tmp_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if place.tmp_dir is not None:
        place.tmp_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(state_dir, ignore_errors=True)  # a previous server's files would say "ready" too early
    state_dir.mkdir(parents=True)
    output_path = log_dir / "torchserve.out"
    # Appended to, never truncated: a server started by someone else may still be writing to it.
    with open(output_path, "ab") as output:
        start = output.tell()
        # A session of its own: the server outlives this command and the terminal it ran in.
        launcher = subprocess.run(
            torchserve_command(place.config, foreground=False, model_store=store, models=models, plugins=plugins),
            env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True)
    if launcher.returncode != 0:
        with open(output_path, "rb") as output:
            output.seek(start)
            said = output.read(4000).decode(errors="replace").strip()
        raise RuntimeError(said or f"TorchServe's launcher exited with {launcher.returncode}")
    pid = running_background_server(place.tmp_dir)
    (state_dir / OWNER_FILE).write_text(f"{pid}\n" if pid else "")
    return Watch(state_dir, management_address(place.config), models.split("=", 1)[0], log_dir,
                 server_alive=lambda: pid is not None and pid_alive(pid),
                 server_output=lambda: output_path.read_text(errors="replace"))
