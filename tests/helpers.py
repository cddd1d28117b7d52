"""Shared test helpers: free ports, HTTP calls, image decoding, and real TorchServe processes."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TINY_SD = REPO / "build" / "models" / "sd-turbo-tiny"
TINY_SDXL = REPO / "build" / "models" / "sdxl-turbo-tiny"
PLUGINS_DIR = REPO / "build" / "plugins"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class HttpReply:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = "application/json",
         timeout: float = 60) -> HttpReply:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, response.read(), {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as err:
        return HttpReply(err.code, err.read(), {k.lower(): v for k, v in err.headers.items()})


def post_json(url: str, payload, timeout: float = 60) -> HttpReply:
    return http("POST", url, json.dumps(payload).encode(), timeout=timeout)


def decode_image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def build_archive(model_dir: Path, store: Path, config: Path | None = None, fmt: str = "no-archive") -> Path:
    command = [PYTHON, str(REPO / "scripts" / "build_archive.py"), "--model-dir", str(model_dir),
               "--store", str(store), "--format", fmt]
    if config is not None:
        command += ["--config", str(config)]
    subprocess.run(command, check=True, capture_output=True)
    return store / ("sdturbo" if fmt == "no-archive" else "sdturbo.mar")


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class TorchServe:
    """A real TorchServe in the foreground, on free loopback ports, with its own TMPDIR and logs."""

    def __init__(self, store: Path, workdir: Path, models: str = "sdturbo=sdturbo", extra_env=None):
        self.ports = {name: free_port() for name in ("inference", "management", "metrics")}
        self.url = f"http://127.0.0.1:{self.ports['inference']}"
        self.management_url = f"http://127.0.0.1:{self.ports['management']}"
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # The repo's config.properties with only the ports and model store changed: the tests exercise
        # the security settings users run with.
        lines = [
            line for line in (REPO / "config.properties").read_text().splitlines()
            if not line.startswith(("inference_address", "management_address", "metrics_address",
                                    "model_store", "load_models"))
        ]
        lines += [
            f"inference_address={self.url}",
            f"management_address={self.management_url}",
            f"metrics_address=http://127.0.0.1:{self.ports['metrics']}",
            f"model_store={store}",
        ]
        config = workdir / "config.properties"
        config.write_text("\n".join(lines) + "\n")
        tmp = workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp), "LOG_LOCATION": str(self.logs),
               "METRICS_LOCATION": str(self.logs), "SDTURBO_DEVICE": "cpu", **(extra_env or {})}
        self.output = open(workdir / "torchserve.out", "wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "ts.model_server", "--start", "--foreground", "--ncs", "--ts-config", str(config),
             "--models", models],
            env=env, stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def worker_ready(self) -> bool:
        try:
            reply = http("GET", f"{self.management_url}/models/sdturbo", content_type=None, timeout=2)
        except OSError:
            return False
        if reply.status != 200:
            return False
        return any(w.get("status") == "READY" for m in reply.json() for w in m.get("workers", []))

    def wait_ready(self, timeout: float = 180) -> TorchServe:
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited early; see {self.workdir / 'torchserve.out'}")
            return self.worker_ready()

        wait_until(ready, timeout, what="the sdturbo worker to be READY")
        return self

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.glob("*.log")) + (
            self.workdir / "torchserve.out").read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process)
        self.output.close()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
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
