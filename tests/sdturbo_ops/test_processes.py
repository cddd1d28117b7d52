"""Child processes and ports (sdturbo_ops/processes.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from sdturbo_ops.processes import command_line, free_port, pid_alive, port_in_use, stop_process_group
from tests.support.helpers import wait_until


def test_a_free_port_can_be_listened_on():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_port_is_in_use_while_something_listens_on_it_and_only_then():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert port_in_use("127.0.0.1", port) and port_in_use("0.0.0.0", port)
    assert not port_in_use("127.0.0.1", port)


def test_a_command_line_is_the_processs_arguments_and_empty_once_it_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker"])
    try:
        # Read at once after Popen returned, the arguments were empty now and then on a loaded machine (the
        # exec not yet complete, we think; unverified): wait for them.
        assert wait_until(lambda: command_line(child.pid), 10, 0.01, what="the child's exec")[-1] == "marker"
    finally:
        child.kill()
        child.wait()
    assert command_line(child.pid) == []


def test_a_pid_is_alive_until_its_process_is_gone():
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def test_stopping_a_group_stops_its_children_too(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              f" open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    while not marker.is_file() or not marker.read_text():
        assert process.poll() is None
        time.sleep(0.02)
    grandchild = int(marker.read_text())
    stop_process_group(process, timeout=10)
    assert process.returncode is not None
    for _ in range(200):
        if not pid_alive(grandchild):
            break
        time.sleep(0.05)
    assert not pid_alive(grandchild)
    stop_process_group(process)  # an exited process: nothing to do
