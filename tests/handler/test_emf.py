"""The worker's half of the container's metrics (handler/emf.py): numbers to the entrypoint's socket, never text."""

from __future__ import annotations

import json
import socket

import pytest

from handler.emf import SOCKET_ENV, MetricsChannel, gpu_peak_mib
from handler.jobs import Reply


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "metrics.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock) -> dict:
    return json.loads(sock.recv(65536))


def test_without_the_entrypoints_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    channel = MetricsChannel.from_environment()
    assert channel._socket is None
    channel.batch({"requests": 1}, [Reply(200, {}, (b"x",))], device=None)  # a no-op, no error
    assert channel.dropped == 0


def test_a_batch_is_sent_as_numbers_with_status_classes_and_images(listener, monkeypatch):
    path, sock = listener
    monkeypatch.setenv(SOCKET_ENV, str(path))
    replies = [Reply(200, {"image": "..."}, (b"png", b"png")), Reply(413, {"message": "too large"}),
               Reply(507, {}), Reply(200, {}, (b"webp",))]
    MetricsChannel.from_environment().batch(
        {"requests": 4, "received": 1.5, "generate_ms": 12.0, "prompt": "a cat"}, replies, device=None)
    assert received(sock) == {"event": "batch", "requests": 4, "received": 1.5, "generate_ms": 12.0,
                              "status": {"2xx": 2, "4xx": 1, "5xx": 1}, "images": 3, "gpu_peak_mib": None}


def test_a_worker_start_says_whether_the_model_loaded(listener):
    path, sock = listener
    channel = MetricsChannel(str(path))
    channel.startup({"process_started": None, "initialize": 10.0, "loaded": 20.0, "warm": 25.0},
                    engine=type("Engine", (), {"device": None})())
    channel.startup({"process_started": 1.0, "initialize": 10.0}, engine=None)
    assert received(sock) == {"event": "startup", "ok": True, "initialize": 10.0, "loaded": 20.0, "warm": 25.0,
                              "gpu_peak_mib": None}
    assert received(sock) == {"event": "startup", "ok": False, "process_started": 1.0, "initialize": 10.0,
                              "gpu_peak_mib": None}


def test_no_gpu_memory_peak_off_cuda():
    import torch

    assert gpu_peak_mib(None) is None and gpu_peak_mib(torch.device("cpu")) is None
