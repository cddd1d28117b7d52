"""Run a real TorchServe on free loopback ports, in the foreground, as a child process group.

Shared by the benchmark and the integration tests: the repository's config.properties is used as it is,
with only the addresses and the model store changed, so both exercise the settings users run with.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_REPLACED_KEYS = ("inference_address", "management_address", "metrics_address", "grpc_inference_port",
                  "grpc_management_port", "model_store", "load_models")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the whole group (launcher, Java frontend, Python workers), SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def model_workers(management_url: str, model: str = "sdturbo") -> list[dict]:
    """The model's workers as the management API describes them; [] while it does not answer."""
    try:
        with urllib.request.urlopen(f"{management_url}/models/{model}", timeout=2) as response:
            return [w for m in json.load(response) for w in m.get("workers", [])]
    except (OSError, ValueError):
        return []


def worker_ready(management_url: str, model: str = "sdturbo") -> bool:
    """Whether any worker of ``model`` is READY (loaded and warmed up)."""
    return any(w.get("status") == "READY" for w in model_workers(management_url, model))


class LocalTorchServe:
    """TorchServe serving ``models`` from ``store``, with its own TMPDIR, logs and ports under ``workdir``."""

    def __init__(self, store: Path, workdir: Path, models: str = "sdturbo=sdturbo", extra_env=None,
                 extra_properties: dict[str, str] | None = None):
        self.started_at = time.monotonic()
        self.launched_at = time.time()  # wall clock, comparable with the handler's logged startup timings
        self.ports = {name: free_port() for name in ("inference", "management", "metrics", "grpc", "grpc_mgmt")}
        self.url = f"http://127.0.0.1:{self.ports['inference']}"
        self.management_url = f"http://127.0.0.1:{self.ports['management']}"
        self.workdir = Path(workdir)
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        lines = [line for line in (REPO / "config.properties").read_text().splitlines()
                 if not line.startswith(_REPLACED_KEYS)]
        lines += [
            f"inference_address={self.url}",
            f"management_address={self.management_url}",
            f"metrics_address=http://127.0.0.1:{self.ports['metrics']}",
            f"grpc_inference_port={self.ports['grpc']}",
            f"grpc_management_port={self.ports['grpc_mgmt']}",
            f"model_store={store}",
        ]
        lines += [f"{key}={value}" for key, value in (extra_properties or {}).items()]
        config = self.workdir / "config.properties"
        config.write_text("\n".join(lines) + "\n")
        tmp = self.workdir / "tmp"  # TorchServe's pid file and unzipped archives: one per server
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "LOG_LOCATION": str(self.logs),
               "METRICS_LOCATION": str(self.logs), **(extra_env or {})}
        self.output_path = self.workdir / "torchserve.out"
        self._output = open(self.output_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs",
             "--ts-config", str(config), "--models", models],
            env=env, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def workers(self, model: str = "sdturbo") -> list[dict]:
        return model_workers(self.management_url, model)

    def worker_ready(self, model: str = "sdturbo") -> bool:
        return worker_ready(self.management_url, model)

    def wait_ready(self, timeout: float = 180, model: str = "sdturbo") -> float:
        """Block until a worker is READY (after load and warm-up); returns seconds since the launch."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited with {self.process.returncode}; see {self.output_path}")
            if self.worker_ready(model):
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        raise TimeoutError(f"no READY worker after {timeout}s; see {self.logs}")

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log"))]
        return "".join(parts) + self.output_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process)
        self._output.close()
