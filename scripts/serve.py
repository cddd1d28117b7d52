#!/usr/bin/env python3
"""Container entrypoint: ``docker run IMAGE serve`` runs TorchServe the way SageMaker hosting expects.

- TorchServe in the foreground on 0.0.0.0:8080 (``/ping``, ``/invocations``, ``/predictions/sdturbo``);
  management and metrics on loopback only; model API off; token auth off because SageMaker puts IAM in
  front of the endpoint and cannot send a TorchServe token.
- The model comes from ``/opt/ml/model`` (``--model-dir``): either an uncompressed archive folder
  (MAR-INF/ at its root, the S3Prefix layout) or one ``.mar`` file. Every file in it must be readable by
  the user the container runs as; the entrypoint checks that before TorchServe starts.
- Its own environment variables are ``SDSERVE_*`` (``SDSERVE_PLUGINS_DIR``, ``SDSERVE_LOG_DIR``; it sets
  ``SDSERVE_STATE_DIR`` for the workers and the plugin); an unknown ``SDSERVE_*`` is refused.
  ``SDTURBO_<FIELD>`` variables belong to the engine (handler/settings.py), which refuses unknown ones.
- SageMaker's environment variables (``SAGEMAKER_TS_BATCH_SIZE``, ``SAGEMAKER_TS_MAX_BATCH_DELAY``,
  ``SAGEMAKER_TS_MIN_WORKERS``/``MAX_WORKERS``, ``SAGEMAKER_MODEL_SERVER_WORKERS``,
  ``SAGEMAKER_TS_RESPONSE_TIMEOUT``/``SAGEMAKER_MODEL_SERVER_TIMEOUT``) become TorchServe model settings.
- ``/ping`` is answered by plugins/readiness: non-200 until a worker has loaded and warmed up, and when
  the model cannot load. On SIGTERM the entrypoint marks itself draining (``/ping`` turns 503), waits for
  queued and running requests to finish (at most ``--drain-seconds``, inside SageMaker's 30 s), stops
  TorchServe and exits 0.

Exit codes: 0 clean shutdown, 2 bad usage or configuration, 3 no model found, 4 model data not readable,
other: TorchServe's own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import yaml

MODEL_NAME = "sdturbo"
REPO = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_USAGE, EXIT_NO_MODEL, EXIT_MODEL_UNREADABLE = 0, 2, 3, 4
ENV_PREFIX = "SDSERVE_"
PLUGINS_DIR_ENV, LOG_DIR_ENV = ENV_PREFIX + "PLUGINS_DIR", ENV_PREFIX + "LOG_DIR"
# Written by this entrypoint for its TorchServe workers (handler/worker_state.py) and the /ping plugin.
STATE_DIR_ENV = ENV_PREFIX + "STATE_DIR"
KNOWN_ENV = (PLUGINS_DIR_ENV, LOG_DIR_ENV, STATE_DIR_ENV)

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


def check_own_environment(environ: dict[str, str]) -> None:
    """Refuse ``SDSERVE_*`` variables this entrypoint does not read, so a typo is not silently ignored."""
    unknown = sorted(key for key in environ if key.startswith(ENV_PREFIX) and key not in KNOWN_ENV)
    if unknown:
        raise ConfigError(f"unknown environment variable(s) {', '.join(unknown)} (known: {', '.join(KNOWN_ENV)})")


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
    rewritten to apply ``overrides``.

    TorchServe lets an archive's model-config.yaml win over config.properties, and /opt/ml/model is
    read-only, so this shadow folder is how SageMaker's variables reach the model's settings while
    model-config.yaml stays the one place that defines them.
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
    config_path = source / "model-config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    config.update(overrides)
    if config.get("minWorkers", 1) > config.get("maxWorkers", 1):  # only a minimum was raised
        config["maxWorkers"] = config["minWorkers"]
    (shadow / "model-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return shadow.parent


def container_properties(args, store: Path) -> str:
    """The container's config.properties: public inference port, everything else on loopback."""
    lines = {
        "inference_address": f"http://{args.host}:{args.port}",
        "management_address": f"http://127.0.0.1:{args.management_port}",
        "metrics_address": f"http://127.0.0.1:{args.metrics_port}",
        # TorchServe always starts its gRPC servers; they stay on loopback like management.
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": str(args.grpc_ports[0]),
        "grpc_management_port": str(args.grpc_ports[1]),
        # SageMaker authenticates callers with IAM (SigV4) and cannot send a TorchServe token.
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "allowed_urls": "^$",
        "model_store": str(store),
        "load_models": f"{MODEL_NAME}={MODEL_NAME}",
        "plugins_path": str(args.plugins_dir),
        "max_request_size": "10485760",
        "max_response_size": "33554432",
        "decode_input_request": "false",
        "job_queue_size": "256",
        # Fallbacks only: the archive's model-config.yaml sets both for this model (load + warm-up on a T4
        # from a cold disk takes minutes; one batch of four 1024x1024 images on a T4 takes seconds).
        "default_response_timeout": "120",
        "default_startup_timeout": "600",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


class Server:
    """TorchServe as a child process group, with a draining shutdown."""

    def __init__(self, args, state_dir: Path):
        self.args = args
        self.state_dir = state_dir
        self.process: subprocess.Popen | None = None
        self.stop_requested = False

    def start(self, config_file: Path) -> None:
        env = {
            **os.environ,
            STATE_DIR_ENV: str(self.state_dir),
            # TorchServe keeps its pid file and unzipped archives in TMPDIR: one per server instance.
            "TMPDIR": str(self.state_dir),
            "LOG_LOCATION": str(self.args.log_dir),
            "METRICS_LOCATION": str(self.args.log_dir),
        }
        command = [sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs",
                   "--ts-config", str(config_file)]
        # A new session, so SIGTERM reaches the launcher and its Java child together, and only when we say.
        self.process = subprocess.Popen(command, env=env, start_new_session=True)

    def request_stop(self, signum, _frame) -> None:
        if not self.stop_requested:
            print(f"serve: received {signal.Signals(signum).name}; draining", flush=True)
        self.stop_requested = True

    def run(self) -> int:
        assert self.process is not None
        while self.process.poll() is None and not self.stop_requested:
            time.sleep(0.2)
        if not self.stop_requested:
            print(f"serve: TorchServe exited with code {self.process.returncode}", flush=True)
            return self.process.returncode or 1
        self.drain()
        self.terminate()
        print("serve: stopped cleanly", flush=True)
        return EXIT_OK

    def drain(self) -> None:
        """Turn /ping to 503, then wait until no request is queued or running (bounded)."""
        (self.state_dir / "draining").touch()
        deadline = time.monotonic() + self.args.drain_seconds
        idle_checks = 0
        while time.monotonic() < deadline and self.process.poll() is None:
            idle_checks = idle_checks + 1 if self._idle() else 0
            if idle_checks >= 3:  # three quiet polls in a row: nothing was between queue and worker
                return
            time.sleep(0.1)
        print("serve: drain deadline reached; stopping with requests still in flight", flush=True)

    def _idle(self) -> bool:
        if any(self.state_dir.glob("*.busy")):
            return False
        url = f"http://127.0.0.1:{self.args.management_port}/models/{MODEL_NAME}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                description = json.load(response)
        except (OSError, ValueError):
            return True  # management API gone: nothing more to wait for
        return all(m.get("jobQueueStatus", {}).get("pendingRequests", 0) == 0 for m in description)

    def terminate(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"],
                        help="SageMaker passes 'serve' (the default)")
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/model"),
                        help="model data folder (default: /opt/ml/model, where SageMaker puts it)")
    parser.add_argument("--host", default="0.0.0.0", help="inference bind address (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(env.get("SAGEMAKER_BIND_TO_PORT", "8080")),
                        help="inference port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--management-port", type=int, default=8081, help="loopback management port")
    parser.add_argument("--metrics-port", type=int, default=8082, help="loopback metrics port")
    parser.add_argument("--grpc-ports", type=int, nargs=2, default=(7070, 7071), metavar=("INFERENCE", "MANAGEMENT"),
                        help="loopback gRPC ports (TorchServe always opens them; default 7070 7071)")
    parser.add_argument("--plugins-dir", type=Path,
                        default=Path(env.get(PLUGINS_DIR_ENV, REPO / "build" / "plugins")),
                        help=f"folder holding readiness-ping.jar (default: ${PLUGINS_DIR_ENV} or build/plugins)")
    parser.add_argument("--log-dir", type=Path, default=Path(env.get(LOG_DIR_ENV, "/tmp/sdturbo-logs")),
                        help=f"TorchServe log folder (default: ${LOG_DIR_ENV} or /tmp/sdturbo-logs; "
                             "it also logs to stdout)")
    parser.add_argument("--drain-seconds", type=float, default=25.0,
                        help="longest wait for in-flight requests after SIGTERM (default: 25)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_own_environment(dict(os.environ))  # first: a misspelt SDSERVE_PLUGINS_DIR explains the next check
        settings = model_settings(dict(os.environ))
    except ConfigError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not (args.plugins_dir / "readiness-ping.jar").is_file():
        print(f"serve: {args.plugins_dir}/readiness-ping.jar is missing; build it with `make plugin`",
              file=sys.stderr)
        return EXIT_USAGE
    if not args.model_dir.is_dir():
        print(f"serve: {args.model_dir} does not exist: mount the model data there (SageMaker does)",
              file=sys.stderr)
        return EXIT_NO_MODEL
    unreadable = unreadable_entry(args.model_dir)
    if unreadable is not None:
        print(f"serve: {unreadable_message(args.model_dir, unreadable)}", file=sys.stderr)
        return EXIT_MODEL_UNREADABLE
    state_dir = Path(tempfile.mkdtemp(prefix="sdturbo-serve-"))
    try:
        return run_server(args, settings, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)  # TorchServe's tmp files and the unpacked .mar too


def run_server(args: argparse.Namespace, settings: dict[str, int], state_dir: Path) -> int:
    try:
        store = prepare_model(args.model_dir, state_dir, settings)
    except (FileNotFoundError, zipfile.BadZipFile) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return EXIT_NO_MODEL
    args.log_dir.mkdir(parents=True, exist_ok=True)
    config_file = state_dir / "config.properties"
    config_file.write_text(container_properties(args, store))

    server = Server(args, state_dir)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    server.start(config_file)
    print(f"serve: TorchServe starting on {args.host}:{args.port} with {args.model_dir}", flush=True)
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
