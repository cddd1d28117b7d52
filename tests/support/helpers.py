"""Shared test helpers: free ports, HTTP calls, image decoding, and real TorchServe processes."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from PIL import Image

from sdturbo_ops.paths import (  # noqa: F401  (re-exported for the tests)
    PLAYGROUND_JAR, PLUGIN_JAR, PLUGINS_DIR, TINY_SD, TINY_SDXL,
)
from sdturbo_ops.processes import free_port  # noqa: F401  (re-exported for the tests)
from sdturbo_ops.local_torchserve import LocalTorchServe  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[2]

PYTHON = sys.executable
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class HttpReply:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = "application/json",
         timeout: float = 60, accept: str | None = None) -> HttpReply:
    headers = {"Content-Type": content_type} if content_type else {}
    if accept is not None:
        headers["Accept"] = accept
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, response.read(), {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as err:
        return HttpReply(err.code, err.read(), {k.lower(): v for k, v in err.headers.items()})


def run_script(script: str, *args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` with this interpreter, capturing text output."""
    return subprocess.run([PYTHON, str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def script_help(script: str, subcommand: str | None = None) -> subprocess.CompletedProcess:
    """``scripts/<script> [subcommand] --help``, run once per session whichever test asks."""
    return _script_help(script, subcommand)  # one cache key, however the subcommand is passed


@cache
def _script_help(script: str, subcommand: str | None) -> subprocess.CompletedProcess:
    return run_script(script, *([subcommand] if subcommand else []), "--help", timeout=60)


def subcommands(script: str) -> list[str]:
    """The subcommands a script's usage line lists (``{local,async,...}``)."""
    usage = script_help(script).stdout.split("\n\n", 1)[0]
    found = re.search(r"\{([\w,-]+)\}", usage)
    return found.group(1).split(",") if found else []


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


def write_model_config(path, handler=None, **overrides):
    """The shipped model-config.yaml with top-level keys (and ``handler`` keys) overridden."""
    from sdturbo_ops.paths import MODEL_CONFIG
    from sdturbo_ops.torchserve_config import write_model_config as write

    return write(MODEL_CONFIG, path, overrides, handler)


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerfile_environment(base: dict[str, str], path: Path = DOCKERFILE) -> dict[str, str]:
    """The variables the Dockerfile's final stage sets with ENV, ``$VAR`` expanded as Docker does (from
    earlier ENV values, else ``base``): what every process in the container sees, read from the file
    itself so that a host-level test cannot drift from it."""
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    declared: dict[str, str] = {}

    def expand(value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: declared.get(m.group(1), base.get(m.group(1), "")), value)

    for keyword, arguments in instructions[last_from:]:
        if keyword != "ENV":
            continue
        words = shlex.split(arguments)
        if "=" not in words[0]:  # the legacy one-variable form `ENV KEY value with spaces`
            words = [f"{words[0]}={' '.join(words[1:])}"]
        for word in words:
            key, _, value = word.partition("=")
            declared[key] = expand(value)
    return declared


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class ServeEntrypoint:
    """`serve` with a SageMaker-like model folder, on free ports, polling /ping from the first moment.

    It runs with exactly the environment the Dockerfile declares (over this process's own, which a container
    does not have, and ``env``, what SageMaker would add); where the image's paths do not exist on the host
    (plugins, logs) command-line flags point elsewhere and leave that environment as it is. Its TMPDIR is a
    folder of its own (``tmp``), so the temporary folder it works in can be found and seen to go; a new one
    in the caller's TMPDIR rather than under ``workdir``, whose depth could leave the workers' sockets no
    room (sdturbo_ops.local_torchserve.require_socket_room).
    """

    def __init__(self, model_dir: Path, workdir: Path, plugins_dir: Path, env=None):
        self.port = free_port()
        self.management_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output_path = workdir / "serve.out"
        self._output = open(self.output_path, "wb")
        self.tmp = Path(tempfile.mkdtemp(prefix="sdse-"))
        environ = {**os.environ, **dockerfile_environment(dict(os.environ)), "TMPDIR": str(self.tmp), **(env or {})}
        self.process = subprocess.Popen(
            [PYTHON, str(REPO / "scripts" / "serve.py"), "serve", "--model-dir", str(model_dir),
             "--plugins-dir", str(plugins_dir), "--log-dir", str(workdir / "logs"),
             "--host", "127.0.0.1", "--port", str(self.port), "--management-port", str(self.management_port),
             "--metrics-port", str(free_port()), "--grpc-ports", str(free_port()), str(free_port())],
            env=environ, stdout=self._output, stderr=subprocess.STDOUT,
        )
        self.pings: list[int] = []
        self.last_ping = ""

    def ping(self) -> int:
        try:
            reply = http("GET", f"{self.url}/ping", content_type=None, timeout=2)
            status, self.last_ping = reply.status, reply.body.decode(errors="replace")
        except OSError:
            status = 0  # not listening yet
        self.pings.append(status)
        return status

    def state_dir(self) -> Path:
        """The folder the entrypoint works in (its workers' state files among its contents)."""
        return wait_until(lambda: next(self.tmp.glob("sdturbo-serve-*"), None), 30, what="the serve folder")

    def readiness(self):
        """What the state folder says, by the rule /ping also follows."""
        from sdturbo_ops import readiness

        return readiness.read(self.state_dir())

    def settled(self) -> bool:
        """Ready, exited, or failed to load: waiting longer would change nothing."""
        return self.ping() == 200 or self.process.poll() is not None or "failed to load" in self.last_ping

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._output.close()
        self.left_behind = sorted(self.tmp.rglob("*"))  # what the entrypoint failed to clean up
        shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ servers on config.properties' own ports
@contextmanager
def private_network():
    """A network namespace with loopback up, held by a sleeping process; yields the prefix that runs a
    command inside it. Nothing is left behind: the namespace goes with its last process."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        message = "the make-target test needs root, unshare and nsenter (util-linux) for a network namespace"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up", "could not bring up loopback in the namespace"
        yield ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
    finally:
        holder.kill()
        holder.wait()


def get(inside: list[str], url: str) -> tuple[int, str]:
    """GET ``url`` from inside the namespace: (status, body)."""
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n")
    result = subprocess.run([*inside, PYTHON, "-c", code, url], capture_output=True, text=True, timeout=30)
    status, _, body = result.stdout.partition("\n")
    return int(status), body
