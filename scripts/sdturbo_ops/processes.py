"""Child processes and ports: the one way this package stops a process group, and tells a pid is alive."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys

# The longest path a Unix socket may have: sun_path less its terminating NUL (108 bytes on Linux, where a
# longer bind fails with "AF_UNIX path too long", tests/e2e/test_first_hour.py; 104 in macOS's sys/un.h,
# not run here).
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


def fits_a_unix_socket(path: os.PathLike | str) -> bool:
    """Whether a Unix socket can be bound at ``path`` as far as its length goes (``MAX_SOCKET_PATH`` bytes)."""
    return len(os.fsencode(path)) <= MAX_SOCKET_PATH


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``: a bind that a server would make fails (with
    SO_REUSEADDR, as servers bind, so a port that only has closed connections left counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def command_line(pid: int) -> list[str]:
    """The arguments process ``pid`` runs with; empty when it is gone (Linux and macOS alike, through psutil)."""
    import psutil  # TorchServe's own dependency

    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return []


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone: it does no more work)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process's group (TorchServe: launcher, Java frontend, Python workers), SIGKILL after
    ``timeout`` seconds. The process must have been started with ``start_new_session=True``."""
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
