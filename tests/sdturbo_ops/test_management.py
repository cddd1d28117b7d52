"""TorchServe's management API as this project reads it (sdturbo_ops/management.py), against a stand-in that
answers as TorchServe does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sdturbo_ops.management import model_description, model_workers, pending_requests
from sdturbo_ops.processes import free_port

DESCRIPTION = [{"modelName": "sdturbo", "workers": [{"id": "9000", "pid": 11, "status": "READY"},
                                                    {"id": "9001", "pid": 12, "status": "UNLOADING"}],
                "jobQueueStatus": {"remainingCapacity": 250, "pendingRequests": 6}}]


class Management(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's spelling)
        known = self.path == "/models/sdturbo"
        body = json.dumps(DESCRIPTION if known else {"code": 404}).encode()
        self.send_response(200 if known else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def management_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Management)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_registered_model_is_described_with_its_workers_and_queue(management_url):
    assert model_description(management_url) == (200, DESCRIPTION)
    assert [w["pid"] for w in model_workers(management_url)] == [11, 12]
    assert pending_requests(management_url) == 6


def test_an_unknown_model_has_no_workers(management_url):
    assert model_description(management_url, "other")[0] == 404
    assert model_workers(management_url, "other") == [] and pending_requests(management_url, "other") == 0


def test_a_server_that_does_not_answer_yet_is_status_0():
    url = f"http://127.0.0.1:{free_port()}"
    assert model_description(url) == (0, []) and model_workers(url) == [] and pending_requests(url) == 0
