"""Reliability against real TorchServe with the tiny model: bad input, fuzzing, overload, worker crashes."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handler.schema import MAX_IMAGE_BODY_BYTES
from sdturbo_ops.management import model_workers
from sdturbo_ops.torchserve_config import read_properties
from tests.support.bad_requests import BAD_IMAGE_REQUESTS, BAD_REQUESTS
from tests.support.helpers import (
    REPO, LocalTorchServe, build_archive, decode_image, http, post_json, wait_until, write_model_config,
)
from tests.support.images import b64, damaged_images, encode, picture

pytestmark = pytest.mark.integration
GOOD = b'{"prompt": "a cat", "seed": 1, "width": 256, "height": 256}'

# HTTP-level cases on top of the parser's table: (body, content type, expected status)
HTTP_BAD_REQUESTS = [(raw, "application/json", status) for raw, status, _ in BAD_REQUESTS] + [
    (GOOD, "image/png", 415),
    (GOOD, "application/x-www-form-urlencoded", 415),
    (GOOD, "multipart/form-data; boundary=x", 415),
    (b"\x00" * 64, "application/octet-stream", 400),
    (os.urandom(512), "application/octet-stream", 400),
    (b'{"prompt": "a cat", "width": 512.0}', "application/json", 400),
    (b'{"prompt": "a cat", "num_inference_steps": -3}', "application/json", 400),
    (b'{"prompt": "a cat", "seed": 1e30}', "application/json", 400),
    (b'{"prompt": ["a", "cat"]}', "application/json", 400),
    (b'{"prompt": {"text": "a cat"}}', "application/json", 400),
    (b'{"prompt": null}', "application/json", 400),
    (b'{"prompt": "a cat",}', "application/json", 400),
    (b'{"prompt": "a cat", "height": 2048, "width": 2048}', "application/json", 400),
    (b'{' * 3000 + b'}' * 3000, "application/json", 400),
]


def workers(server) -> list[dict]:
    return model_workers(server.management_url)


def test_the_matrix_has_at_least_40_cases():
    assert len(HTTP_BAD_REQUESTS) >= 40


def test_bad_input_matrix_gets_json_4xx_and_good_neighbours_succeed(torchserve):
    """All bad requests and a few good ones at once: they share batches (batchSize 4)."""
    url = f"{torchserve.url}/predictions/sdturbo"
    pid_before = [w["pid"] for w in workers(torchserve)]
    jobs = [(body, ctype, status) for body, ctype, status in HTTP_BAD_REQUESTS]
    jobs += [(GOOD, "application/json", 200)] * 8
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda job: http("POST", url, job[0], content_type=job[1], timeout=120), jobs))
    for (body, ctype, expected), reply in zip(jobs, replies, strict=True):
        assert reply.status == expected, (body[:60], ctype, reply.status, reply.body[:200])
        payload = json.loads(reply.body)
        if expected != 200:
            assert payload["code"] == expected and payload["message"], payload
            assert payload.get("errors"), payload  # names the field (or body / Content-Type)
    assert [w["pid"] for w in workers(torchserve)] == pid_before, "a worker died"


def test_oversize_body_is_413_with_json(torchserve):
    reply = http("POST", f"{torchserve.url}/predictions/sdturbo", b'{"prompt": "' + b"x" * 70_000 + b'"}')
    assert reply.status == 413
    assert json.loads(reply.body)["code"] == 413


def test_image_body_over_its_limit_is_413_with_json(torchserve):
    """Bodies with an image may be larger, up to their own stated limit: just over it, the handler (not
    the frontend) answers, with the limit in the JSON."""
    body = b'{"prompt": "a", "image": "%s"}' % (b"A" * MAX_IMAGE_BODY_BYTES)
    reply = http("POST", f"{torchserve.url}/predictions/sdturbo", body)
    assert reply.status == 413
    assert json.loads(reply.body)["errors"][0]["field"] == "body" and str(MAX_IMAGE_BODY_BYTES) in reply.body.decode()


def test_huge_body_is_refused_by_the_frontend(torchserve):
    """config.properties' max_request_size, as users run it: a body of exactly that size still reaches the
    handler (its JSON 413); one byte more is refused by the frontend from the Content-Length alone (a bare
    413, before the body is read, let alone passed to Python)."""
    limit = int(read_properties(REPO / "config.properties")["max_request_size"])
    at_limit = b'{"prompt": "' + b"x" * (limit - 14) + b'"}'
    assert len(at_limit) == limit
    reply = http("POST", f"{torchserve.url}/predictions/sdturbo", at_limit)
    assert reply.status == 413 and json.loads(reply.body)["type"] == "InvalidRequest"
    connection = HTTPConnection("127.0.0.1", torchserve.ports["inference"], timeout=30)
    try:
        connection.putrequest("POST", "/predictions/sdturbo")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(limit + 1))
        connection.endheaders()  # no body sent: the frontend answers from the header
        refused = connection.getresponse()
        assert refused.status == 413 and b"InvalidRequest" not in refused.read()
    finally:
        connection.close()
    assert post_json(f"{torchserve.url}/predictions/sdturbo", {"prompt": "still fine"}).status == 200


# ------------------------------------------------------------------ image-to-image: untrusted binary input
GOOD_IMAGE = {"prompt": "a cat", "seed": 1, "image": b64(encode(picture(256, 256)))}


def pixels(reply) -> np.ndarray:
    return np.asarray(decode_image(json.loads(reply.body)["image"]), dtype=np.int16)


def test_bad_image_matrix_gets_json_4xx_and_good_neighbours_are_unharmed(torchserve):
    """Every bad image case (tests/handler/test_schema.py, tests/handler/test_image_input.py) at once with good image and
    text requests, in shuffled order so they share batches (batchSize 4): each bad one gets its 4xx naming
    its field, each good one the image it gets alone, and no worker dies."""
    url = f"{torchserve.url}/predictions/sdturbo"
    pid_before = [w["pid"] for w in workers(torchserve)]
    good_text = {"prompt": "a cat", "seed": 2, "width": 256, "height": 256}
    alone = {"image": pixels(post_json(url, GOOD_IMAGE)), "text": pixels(post_json(url, good_text))}
    jobs = [(raw, status, field) for raw, status, field in BAD_IMAGE_REQUESTS]
    jobs += [(json.dumps(GOOD_IMAGE).encode(), 200, "image")] * 8 + [(json.dumps(good_text).encode(), 200, "text")] * 4
    random.Random(17).shuffle(jobs)
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda job: http("POST", url, job[0], timeout=180), jobs))
    for (body, expected, field), reply in zip(jobs, replies, strict=True):
        assert reply.status == expected, (body[:80], reply.status, reply.body[:200])
        if expected == 200:
            assert np.abs(pixels(reply) - alone[field]).max() <= 1  # batch-mates change rounding at most
        else:
            payload = json.loads(reply.body)
            assert payload["code"] == expected and field in {e["field"] for e in payload["errors"]}, payload
    assert [w["pid"] for w in workers(torchserve)] == pid_before, "a worker died"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=damaged_images())
def test_damaged_images_over_http_never_get_a_5xx(torchserve, data):
    reply = post_json(f"{torchserve.url}/predictions/sdturbo", {"prompt": "a cat", "image": b64(data)}, timeout=120)
    assert reply.status in (200, 400, 413), (reply.status, reply.body[:200])
    json.loads(reply.body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {}, optional={"prompt": json_values, "seed": json_values, "width": json_values, "height": json_values,
                  "num_images": json_values, "output_format": json_values, "guidance_scale": json_values,
                  "num_inference_steps": json_values, "extra": json_values})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), request_like.map(lambda d: json.dumps(d).encode())))
def test_http_fuzz_never_gets_a_5xx(torchserve, body):
    reply = http("POST", f"{torchserve.url}/predictions/sdturbo", body, timeout=120)
    assert reply.status == 200 or 400 <= reply.status < 500, (body[:100], reply.status, reply.body[:200])
    json.loads(reply.body)


# ------------------------------------------------------------------ overload and crashes
@pytest.fixture(scope="module")
def small_server(tmp_path_factory, tiny_sd_dir):
    """One worker, batches of one, a queue of 3: easy to overload and to crash."""
    root = tmp_path_factory.mktemp("small")
    config = write_model_config(root / "model-config.yaml", minWorkers=1, maxWorkers=1, batchSize=1, maxBatchDelay=1,
                                jobQueueSize=3)
    store = root / "store"
    build_archive(tiny_sd_dir, store, config)
    server = LocalTorchServe(store, root / "ts", extra_env={"SDTURBO_DEVICE": "cpu"})
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()


SLOW = {"prompt": "a slow cat", "num_images": 4, "width": 768, "height": 768}


def test_overload_gets_a_fast_503_and_recovers(small_server):
    url = f"{small_server.url}/predictions/sdturbo"

    def timed(_):
        started = time.monotonic()
        reply = post_json(url, SLOW, timeout=300)
        return reply, time.monotonic() - started

    with ThreadPoolExecutor(14) as pool:
        results = list(pool.map(timed, range(14)))
    refused = [(r, t) for r, t in results if r.status == 503]
    served = [r for r, _ in results if r.status == 200]
    assert refused and served, [r.status for r, _ in results]
    assert all(t < 5 for _, t in refused), "overload must be refused at once, not after waiting"
    assert all(json.loads(r.body)["message"] for r, _ in refused)
    # load is gone: the next request is served
    assert post_json(url, {"prompt": "after the storm"}, timeout=120).status == 200


def test_killed_worker_fails_its_request_clearly_and_comes_back(small_server):
    url = f"{small_server.url}/predictions/sdturbo"
    wait_until(lambda: any(w["status"] == "READY" for w in workers(small_server)), 60, what="ready worker")
    pid = workers(small_server)[0]["pid"]
    result = {}
    thread = threading.Thread(target=lambda: result.update(reply=post_json(url, SLOW, timeout=120)))
    thread.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert 500 <= result["reply"].status < 600, result["reply"].status
    killed_at = time.monotonic()

    def served_again():
        return post_json(url, {"prompt": "back again"}, timeout=30).status == 200

    wait_until(served_again, 30, 0.5, what="a new worker to serve")
    assert time.monotonic() - killed_at < 30
    assert workers(small_server)[0]["pid"] != pid
