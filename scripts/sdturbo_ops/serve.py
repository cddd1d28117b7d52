"""The container entrypoint's work (scripts/serve.py is its CLI): TorchServe the way SageMaker hosting expects.

- TorchServe in the foreground with config.properties' settings, overriding only what the container needs:
  the inference API on the public address, management and metrics on loopback ports, the model store, the
  readiness plugin. Token auth stays off (SageMaker authenticates callers with IAM and cannot send a
  TorchServe token), and so do the model API and URL loading, exactly as config.properties sets them.
- The model data (``--model-dir``, read-only) is either an uncompressed archive folder (the S3Prefix
  layout) or one ``.mar``; it is laid out in a temporary folder whose model-config.yaml carries SageMaker's
  settings. That folder (with TorchServe's own temporary files and an unpacked .mar) is removed on exit.
- SIGTERM: the state folder says "draining" (``/ping`` turns 503), queued and running requests finish
  within the drain limit, then the process group stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sdturbo_ops import emf, readiness
from sdturbo_ops.management import pending_requests
from sdturbo_ops.paths import MODEL_NAME
from sdturbo_ops.processes import stop_process_group
from sdturbo_ops.local_torchserve import torchserve_command, torchserve_env
from sdturbo_ops.torchserve_config import derive_properties, write_model_config

ENV_PREFIX = "SDSERVE_"
PLUGINS_DIR_ENV, LOG_DIR_ENV = ENV_PREFIX + "PLUGINS_DIR", ENV_PREFIX + "LOG_DIR"
# Set by this entrypoint for its TorchServe workers (handler/worker_state.py) and the /ping plugin.
KNOWN_ENV = (PLUGINS_DIR_ENV, LOG_DIR_ENV, readiness.STATE_DIR_ENV, *emf.KNOWN_ENV)
# Within SageMaker's 30 s between SIGTERM and SIGKILL: the drain, then this for the process group to stop.
STOP_SECONDS = 10

# SageMaker's conventional variables -> TorchServe per-model settings (as the SageMaker PyTorch
# inference toolkit maps them). Later entries win, so the TS-specific names override generic ones.
SAGEMAKER_ENV = (
    ("SAGEMAKER_MODEL_SERVER_WORKERS", ("minWorkers", "maxWorkers")),
    ("SAGEMAKER_TS_MIN_WORKERS", ("minWorkers",)),
    ("SAGEMAKER_TS_MAX_WORKERS", ("maxWorkers",)),
    ("SAGEMAKER_TS_BATCH_SIZE", ("batchSize",)),
    ("SAGEMAKER_TS_MAX_BATCH_DELAY", ("maxBatchDelay",)),
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", ("responseTimeout",)),
    ("SAGEMAKER_TS_RESPONSE_TIMEOUT", ("responseTimeout",)),
)


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Listeners:
    """Where the container's TorchServe listens: inference on ``host:port``, the rest on loopback."""

    host: str = "0.0.0.0"
    port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
    grpc_ports: tuple[int, int] = (7070, 7071)

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"


def check_own_environment(environ: dict[str, str]) -> None:
    """Refuse ``SDSERVE_*`` variables this entrypoint does not read, so a typo is not silently ignored."""
    unknown = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in KNOWN_ENV)
    if unknown:
        raise ConfigError(f"unknown environment variable(s) {', '.join(unknown)} (known: {', '.join(KNOWN_ENV)})")
    try:
        emf.MetricsSettings.from_environment(environ)
    except emf.MetricsConfigError as exc:
        raise ConfigError(str(exc)) from None


def unreadable_entry(model_dir: Path) -> Path | None:
    """The first folder under ``model_dir`` this process cannot list and enter, or file it cannot read."""
    if not os.access(model_dir, os.R_OK | os.X_OK):
        return model_dir
    for root, dirs, files in os.walk(model_dir):
        for name in dirs:
            if not os.access(os.path.join(root, name), os.R_OK | os.X_OK):
                return Path(root, name)
        for name in files:
            if not os.access(os.path.join(root, name), os.R_OK):
                return Path(root, name)
    return None


def unreadable_message(model_dir: Path, entry: Path) -> str:
    """One line naming the entry, who owns it, and the fix (SageMaker shows this line in the endpoint's log)."""
    status = entry.stat()
    return (f"cannot read {entry} as uid {os.getuid()} (owner uid {status.st_uid}, mode "
            f"{status.st_mode & 0o7777:04o}): make the model data readable by every user, for example "
            f"`chmod -R a+rX` on the folder mounted at {model_dir}")


def model_settings(environ: dict[str, str]) -> dict[str, int]:
    """TorchServe per-model settings from the SageMaker environment; values must be positive ints."""
    settings: dict[str, int] = {}
    for variable, keys in SAGEMAKER_ENV:
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not a whole number") from None
        if value < (0 if variable == "SAGEMAKER_TS_MAX_BATCH_DELAY" else 1):
            raise ConfigError(f"{variable}={raw!r} is out of range")
        for key in keys:
            settings[key] = value
    if settings.get("minWorkers", 0) > settings.get("maxWorkers", sys.maxsize):
        raise ConfigError("SAGEMAKER_TS_MIN_WORKERS is larger than SAGEMAKER_TS_MAX_WORKERS")
    return settings


def prepare_model(model_dir: Path, work_dir: Path, overrides: dict[str, int]) -> Path:
    """Lay out ``work_dir/model-store/sdturbo``: the archive's files, linked, with its model-config.yaml
    rewritten to apply ``overrides``; returns the model store.

    TorchServe lets an archive's model-config.yaml win over config.properties, and /opt/ml/model is
    read-only, so this shadow folder is how SageMaker's variables reach the model's settings while
    model-config.yaml stays the one place that defines them.

    Raises:
        FileNotFoundError: ``model_dir`` holds no archive (or several .mar files).
        zipfile.BadZipFile: the .mar is damaged.
    """
    source = model_dir
    if not (model_dir / "MAR-INF" / "MANIFEST.json").is_file():
        archives = sorted(model_dir.glob("*.mar"))
        if len(archives) != 1:
            found = "several .mar files" if archives else "neither MAR-INF/MANIFEST.json nor a .mar file"
            raise FileNotFoundError(
                f"{model_dir} holds {found}: use the archive folder built by `make mar` as the model data"
            )
        source = work_dir / "unpacked"
        with zipfile.ZipFile(archives[0]) as archive:
            archive.extractall(source)
    shadow = work_dir / "model-store" / MODEL_NAME
    shadow.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "model-config.yaml":
            (shadow / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    write_model_config(source / "model-config.yaml", shadow / "model-config.yaml", overrides)
    return shadow.parent


def container_properties(listeners: Listeners, store: Path, plugins_dir: Path) -> str:
    """The container's config.properties: the repository's, with the container's own listeners, model
    store and plugins folder."""
    return derive_properties({
        "inference_address": f"http://{listeners.host}:{listeners.port}",
        "management_address": listeners.management_url,
        "metrics_address": f"http://127.0.0.1:{listeners.metrics_port}",
        "grpc_inference_port": listeners.grpc_ports[0],
        "grpc_management_port": listeners.grpc_ports[1],
        "model_store": store,
        "load_models": f"{MODEL_NAME}={MODEL_NAME}",
        "plugins_path": plugins_dir,
    }, why="the container's listeners (inference public, the rest on loopback), model store and plugins")


class Server:
    """TorchServe as a child process group, with a draining shutdown."""

    def __init__(self, listeners: Listeners, state_dir: Path, log_dir: Path, drain_seconds: float,
                 worker_env: dict[str, str] | None = None):
        self.listeners = listeners
        self.worker_env = worker_env or {}
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.drain_seconds = drain_seconds
        self.process: subprocess.Popen | None = None
        self.stop_requested = False

    def start(self, config_file: Path) -> None:
        # TorchServe keeps its pid file and unzipped archives in TMPDIR: the state folder, removed on exit.
        env = torchserve_env(self.log_dir, self.state_dir, tmp_dir=self.state_dir, extra=self.worker_env)
        # A new session, so SIGTERM reaches the launcher and its Java child together, and only when we say.
        self.process = subprocess.Popen(torchserve_command(config_file, foreground=True), env=env,
                                        start_new_session=True)

    def request_stop(self, signum, _frame) -> None:
        if not self.stop_requested:
            emf.say(f"serve: received {signal.Signals(signum).name}; draining")
        self.stop_requested = True

    def run(self) -> int:
        assert self.process is not None
        while self.process.poll() is None and not self.stop_requested:
            time.sleep(0.2)
        if not self.stop_requested:
            emf.say(f"serve: TorchServe exited with code {self.process.returncode}")
            return self.process.returncode or 1
        self.drain()
        stop_process_group(self.process, STOP_SECONDS)
        emf.say("serve: stopped cleanly")
        return 0

    def drain(self) -> None:
        """Turn /ping to 503, then wait until no request is queued or running (bounded)."""
        readiness.mark_draining(self.state_dir)
        deadline = time.monotonic() + self.drain_seconds
        idle_checks = 0
        while time.monotonic() < deadline and self.process.poll() is None:
            idle_checks = idle_checks + 1 if self._idle() else 0
            if idle_checks >= 3:  # three quiet polls in a row: nothing was between queue and worker
                return
            time.sleep(0.1)
        emf.say("serve: drain deadline reached; stopping with requests still in flight")

    def _idle(self) -> bool:
        # A dead worker's busy marker stays behind; only live workers' markers mean work in flight.
        return not readiness.busy_workers(self.state_dir) and pending_requests(self.listeners.management_url) == 0


def serve(model_dir: Path, listeners: Listeners, plugins_dir: Path, log_dir: Path, drain_seconds: float,
          settings: dict[str, int]) -> int:
    """Run TorchServe until it exits or SIGTERM/SIGINT; returns the exit code. The temporary folder it
    works in is removed however this ends."""
    state_dir = Path(tempfile.mkdtemp(prefix="sdturbo-serve-"))
    metrics = None
    try:
        store = prepare_model(model_dir, state_dir, settings)
        # The container's CloudWatch records (sdturbo_ops/emf.py): on unless SDSERVE_METRICS=off.
        metrics = emf.start(os.environ, state_dir, f"http://127.0.0.1:{listeners.metrics_port}")
        log_dir.mkdir(parents=True, exist_ok=True)
        config_file = state_dir / "config.properties"
        config_file.write_text(container_properties(listeners, store, plugins_dir))
        server = Server(listeners, state_dir, log_dir, drain_seconds, metrics.worker_env if metrics else None)
        signal.signal(signal.SIGTERM, server.request_stop)
        signal.signal(signal.SIGINT, server.request_stop)
        server.start(config_file)
        emf.say(f"serve: TorchServe starting on {listeners.host}:{listeners.port} with {model_dir}")
        return server.run()
    finally:
        if metrics is not None:
            metrics.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
