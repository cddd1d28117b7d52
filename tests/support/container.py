"""Building and running the project's image in tests: a private Docker engine, a base image made from
Debian's packages, a local torch wheel index, and HTTP into a container's network namespace.

Nothing here touches the host's networking: the engine runs with ``--bridge=none --iptables=false
--ip-forward=false`` and containers with ``--network none``; tests reach a container by entering its
network namespace (``nsenter``), never through a published port.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from tests.support.helpers import REPO, HttpReply

SUITE = "bookworm"
# What python:3.11-slim-bookworm offers the Dockerfile: python3.11 with venv (as `python`), apt, useradd,
# CA certificates. Debian's python3 is 3.11 in bookworm, so the local cp311 torch wheel fits.
BASE_PACKAGES = ("ca-certificates", "python3", "python3-venv", "python-is-python3", "passwd")
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
# Outbound TLS from this kind of machine may be re-signed by a proxy the host trusts: the image trusts the
# host's bundle too, also after Debian's update-ca-certificates rewrites /etc/ssl/certs (it re-adds
# everything under /usr/local/share/ca-certificates).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# What the official image sets and Debian's rootfs has no ENV for (Docker expands $PATH from the image).
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# A local rootfs is reused for a week at most, so Debian's security updates still arrive.
BASE_CACHE_SECONDS = 7 * 24 * 3600
WHEELS = Path("/opt/wheels")
# Lines for the run's closing summary (tests/conftest.py prints them): image size, build time.
SUMMARY = pytest.StashKey[list]()


def missing_tools() -> list[str]:
    """Programs the image test needs that this machine lacks (`make test` installs them as root)."""
    needed = {"dockerd": "docker.io", "containerd": "containerd", "runc": "runc", "mmdebstrap": "mmdebstrap",
              "nsenter": "util-linux"}
    missing = [f"{tool} (apt package {package})" for tool, package in needed.items() if not shutil.which(tool)]
    if shutil.which("dockerd") and not (Path(shutil.which("dockerd")).parent.parent / "bin" / "docker").exists():
        missing.append("Debian's docker client beside dockerd (apt package docker.io)")
    return missing


def cgroup_problem(mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """Why dockerd cannot start here for want of cgroups, in one line; None when it can.

    dockerd refuses to start without the devices controller ("Devices cgroup isn't mounted", moby's
    daemon/daemon.go): a cgroup v1 hierarchy with ``devices``, or the unified cgroup2 hierarchy at
    /sys/fs/cgroup (where devices are controlled with eBPF). Without it the engine fixture once failed 15
    times, each with a long dockerd log whose last line was the cause.
    """
    for line in mountinfo.read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fstype, _source, options = (rest.split() + ["", "", ""])[:3]
        if fstype == "cgroup2" and fields.split()[4] == "/sys/fs/cgroup":
            return None
        if fstype == "cgroup" and "devices" in options.split(","):
            return None
    return ("cgroups: none with the devices controller is mounted, and dockerd refuses to start without it "
            "(\"Devices cgroup isn't mounted\"); run as root where /sys/fs/cgroup is mounted (in a container: "
            "--privileged, or the host's cgroups)")


def engine_problems() -> list[str]:
    """What keeps this machine from running the image test, one line each; empty when nothing does."""
    problems = missing_tools() + ([] if os.geteuid() == 0 else ["root (a private dockerd needs it)"])
    cgroups = cgroup_problem()
    return problems + ([cgroups] if cgroups else [])


def dockerd_cause(log: str) -> str:
    """The line of dockerd's log that says why it stopped: its "failed to start daemon" line, else its last."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "failed to start daemon" in line), lines[-1] if lines else
                "no output")


def host_network_state() -> dict[str, str]:
    """What a Docker engine may change on the host: ip_forward, and the iptables rules where iptables runs."""
    state = {"ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()}
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            result = subprocess.run([tool], capture_output=True, text=True)
            # the header and counters change with time; the rules are what matter
            state[tool] = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                                    if not line.startswith("#"))
    return state


class PrivateDocker:
    """A dockerd of our own under ``root``: its data root, exec root, socket and containerd, nothing shared.

    Debian's docker client is used (the one packaged with dockerd): it has BuildKit built in.
    """

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        dockerd = shutil.which("dockerd")
        assert dockerd, "dockerd is not installed"
        self.dockerd = dockerd
        self.client = str(Path(dockerd).parent.parent / "bin" / "docker")
        self.process: subprocess.Popen | None = None
        self.log_path = root / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "1",
                "DOCKER_CONFIG": str(self.root / "client-config")}

    def start(self, timeout: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [self.dockerd, "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "--host", f"unix://{self.socket}",
             # no bridge, no NAT rules, and without the last flag dockerd turns on the host's ip_forward
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.process.returncode}: {dockerd_cause(self.log())}\n"
                                   f"(the end of its log:)\n{self.log()[-3000:]}")
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"dockerd did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def docker(self, *args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([self.client, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def stop(self) -> None:
        """Remove every container, stop the engine, and delete everything it wrote."""
        if self.process is not None and self.process.poll() is None:
            containers = self.docker("ps", "-aq", check=False).stdout.split()
            if containers:
                self.docker("rm", "-f", *containers, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # dockerd unmounts its layers on a clean stop; after a crash, unmount what is left before deleting
        for mount in reversed(mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return [point for point in points if point.startswith(prefix)]


# ------------------------------------------------------------------ base image
def base_rootfs(cache_dir: Path) -> tuple[Path, bool]:
    """A Debian bookworm rootfs tarball (mmdebstrap) with the host's CA bundle; returns it and whether a
    fresh one was made. Reused from ``cache_dir`` while younger than a week and made by the same recipe."""
    command = ["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               "--aptopt=Apt::Install-Recommends \"false\"",
               "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
               "--dpkgopt=path-exclude=/usr/share/locale/*",
               "--customize-hook=mkdir -p \"$1/usr/local/share/ca-certificates\"",
               f"--customize-hook=cp {HOST_CA_BUNDLE} \"$1/usr/local/share/ca-certificates/host-bundle.crt\"",
               f"--customize-hook=cp {HOST_CA_BUNDLE} \"$1/etc/ssl/certs/ca-certificates.crt\""]
    recipe = hashlib.sha256(json.dumps([command, MIRRORS]).encode() + HOST_CA_BUNDLE.read_bytes()).hexdigest()[:16]
    tarball = cache_dir / f"base-{SUITE}-{recipe}.tar"
    if tarball.exists() and time.time() - tarball.stat().st_mtime < BASE_CACHE_SECONDS:
        return tarball, False
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob(f"base-{SUITE}-*.tar"):
        old.unlink()
    scratch = tarball.with_name(tarball.stem + ".partial.tar")  # mmdebstrap picks its format by extension
    result = subprocess.run([*command, SUITE, str(scratch), *MIRRORS], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        scratch.unlink(missing_ok=True)
        raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-3000:]}")
    scratch.rename(tarball)
    return tarball, True


def import_base_image(engine: PrivateDocker, tarball: Path, tag: str) -> None:
    changes = [arg for env in BASE_ENV for arg in ("--change", f"ENV {env}")]
    with open(tarball, "rb") as stream:
        engine.docker("import", *changes, "--change", 'CMD ["python3"]', "-", tag, stdin=stream, timeout=600)


# ------------------------------------------------------------------ torch for the test build
def torch_pin() -> str:
    """setup.cfg's torch version: the one pin the Dockerfile installs from a separate index."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    pins = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    return next(pin for pin in pins if pin.startswith("torch==")).split("==", 1)[1]


def local_cpu_wheel(wheels: Path = WHEELS) -> Path | None:
    """The pinned torch as a local CPU wheel for CPython 3.11 on x86-64, when this machine has it."""
    candidates = sorted(wheels.glob(f"torch-{torch_pin()}+cpu-cp311-cp311-*x86_64.whl"))
    return candidates[0] if candidates else None


class WheelIndex:
    """A PEP 503 index with one wheel, served on loopback for `docker build --network host`."""

    def __init__(self, wheel: Path, root: Path):
        project = root / "simple" / "torch"
        project.mkdir(parents=True)
        (root / wheel.name).symlink_to(wheel)
        (project / "index.html").write_text(f'<a href="/{wheel.name}">{wheel.name}</a>\n')
        handler = partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


# ------------------------------------------------------------------ talking to a container
_CLIENT = """
import base64, json, sys, urllib.error, urllib.request
method, url, content_type, timeout, accept = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
body = sys.stdin.buffer.read() if method != "GET" else None
headers = {name: value for name, value in (("Content-Type", content_type), ("Accept", accept)) if value}
request = urllib.request.Request(url, data=body, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status, data, got = response.status, response.read(), response.headers
except urllib.error.HTTPError as error:
    status, data, got = error.code, error.read(), error.headers
except OSError:
    status, data, got = 0, b"", {}
print(json.dumps({"status": status, "body": base64.b64encode(data).decode(),
                  "headers": {name.lower(): value for name, value in got.items()}}))
"""


def container_http(pid: int, method: str, path: str, body: bytes | None = None,
                   content_type: str | None = "application/json", port: int = 8080,
                   timeout: float = 60, accept: str | None = None) -> HttpReply:
    """One HTTP call to ``127.0.0.1:port`` inside the network namespace of the process ``pid``.

    Status 0 means nothing answered (not listening yet). Only the network namespace is entered, so this
    interpreter and its files are the host's.
    """
    result = subprocess.run(
        ["nsenter", f"--target={pid}", "--net", "--", sys.executable, "-c", _CLIENT, method,
         f"http://127.0.0.1:{port}{path}", content_type or "", str(timeout), accept or ""],
        input=body or b"", capture_output=True, timeout=timeout + 30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nsenter into {pid} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    reply = json.loads(result.stdout)
    return HttpReply(reply["status"], base64.b64decode(reply["body"]), reply["headers"])


def make_tempdir(prefix: str) -> Path:
    """A short path under /tmp: dockerd's and containerd's unix sockets must fit in 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
