"""The container entrypoint (scripts/serve.py) run on the host, as SageMaker runs `docker run IMAGE serve`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest

from tests.support import emf
from tests.support.helpers import ServeEntrypoint, build_archive, decode_image, http, post_json, wait_until
from tests.support.images import b64, encode, picture

pytestmark = pytest.mark.integration


def test_ping_is_unhealthy_until_the_model_is_warm(serve):
    answered = [s for s in serve.pings if s]
    assert answered[-1] == 200
    assert 503 in answered, f"never saw the not-ready state: {serve.pings}"
    assert answered.index(200) > answered.index(503)
    assert "warm-up generation" in (serve.output() + "".join(
        p.read_text(errors="replace") for p in (serve.output_path.parent / "logs").glob("*.log")))


def test_the_entrypoint_writes_each_stage_and_its_cold_start_as_cloudwatch_records(serve):
    """SageMaker sends the container's stdout to the endpoint's log group: every record there is one whole
    line that follows the EMF specification, with the stages of each batch, each worker's start and the cold
    start's phases, and no request's text."""
    prompt = "a lighthouse painted by the metrics test"
    assert post_json(f"{serve.url}/invocations", {"prompt": prompt, "seed": 5, "width": 256}).status == 200
    found = wait_until(lambda: emf.events(emf.records(serve.output()), "batch") and emf.records(serve.output()),
                       30, 0.2, what="a batch record on the entrypoint's stdout")
    batch = [emf.metrics(record) for record in emf.events(found, "batch")]
    assert any(m["Images"] >= 1 and m["GenerateTime"] > 0 and m["DecodeTime"] > 0 for m in batch), batch
    assert {key: found[0][key] for key in ("Endpoint", "Model", "InstanceType")} == {
        "Endpoint": "local", "Model": "local", "InstanceType": "local"}
    start = emf.metrics(emf.events(found, "worker-start")[0])
    assert start["StartupFailed"] == 0 and start["StartupModelLoad"] > 0 and start["StartupReady"] > 0
    cold = {name for record in emf.events(found, "cold-start") for name in emf.metrics(record)}
    assert cold == {"ColdStartContainer", "ColdStartReady", "ColdStartFirstReply"}
    assert emf.metrics(emf.events(found, "minute")[0])["InstanceUp"] == 1
    assert "lighthouse" not in "\n".join(line for line in serve.output().splitlines() if '"_aws"' in line)


def test_invocations_without_model_name_returns_png(serve):
    reply = post_json(f"{serve.url}/invocations", {"prompt": "a cat", "seed": 3, "width": 256})
    assert reply.status == 200, reply.body[:300]
    assert decode_image(reply.json()["image"]).size == (256, 512)


def test_image_to_image_through_the_entrypoint(serve):
    """The container's config (scripts/serve.py) lets an image body through: /invocations as SageMaker
    calls it, with raw bytes as invoke_endpoint_async sends them."""
    request = {"prompt": "a cat", "seed": 3, "image": b64(encode(picture(384, 256), "WEBP")), "strength": 0.6}
    raw = json.dumps(request).encode()
    reply = http("POST", f"{serve.url}/invocations", raw, content_type="application/octet-stream")
    assert reply.status == 200, reply.body[:300]
    assert decode_image(reply.json()["image"]).size == (384, 256)
    big = b64(encode(picture(1024, 1024), "PNG", compress_level=0))  # ~4 MiB: over the old 1 MiB frontend limit
    assert post_json(f"{serve.url}/invocations", {"prompt": "a cat", "image": big, "width": 256}).status == 200


def test_predictions_route_works_too(serve):
    assert post_json(f"{serve.url}/predictions/sdturbo", {"prompt": "a cat"}).status == 200


def test_raw_bytes_from_invoke_endpoint_async(serve):
    reply = http("POST", f"{serve.url}/invocations", b'{"prompt": "a cat"}', content_type="application/octet-stream")
    assert reply.status == 200


def test_invocations_as_invoke_endpoint_async_asks_for_the_image(serve):
    """invoke_endpoint_async(Accept="image/png") with its octet-stream body: the reply, which SageMaker
    writes to S3 as the output object, is the PNG itself; an error asked for as an image is still JSON."""
    reply = http("POST", f"{serve.url}/invocations", b'{"prompt": "a cat", "seed": 8}',
                 content_type="application/octet-stream", accept="image/png")
    assert reply.status == 200, reply.body[:300]
    assert reply.headers["content-type"] == "image/png" and reply.headers["x-seed"] == "8"
    assert reply.body.startswith(b"\x89PNG\r\n\x1a\n")
    refused = http("POST", f"{serve.url}/invocations", b'{"prompt": "a cat", "num_images": 2}',
                   content_type="application/octet-stream", accept="image/png")
    assert (refused.status, refused.headers["content-type"]) == (406, "application/json")


def test_management_api_is_not_on_the_public_port(serve):
    for method, path in (("GET", "/models"), ("POST", "/models?url=x.mar"), ("DELETE", "/models/sdturbo")):
        assert http(method, serve.url + path, b"" if method != "GET" else None).status in (400, 404, 405)


def test_sagemaker_environment_reaches_torchserve(tmp_path, sagemaker_model_dir, plugins_dir):
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir,
                             env={"SAGEMAKER_TS_BATCH_SIZE": "3", "SAGEMAKER_TS_MAX_BATCH_DELAY": "77",
                                  "SAGEMAKER_MODEL_SERVER_TIMEOUT": "99"})
    try:
        wait_until(lambda: server.ping() == 200 or server.process.poll() is not None, 180, 0.1, what="ready")
        description = http("GET", f"http://127.0.0.1:{server.management_port}/models/sdturbo", content_type=None)
        model = description.json()[0]
        assert (model["batchSize"], model["maxBatchDelay"], model["responseTimeout"]) == (3, 77, 99)
    finally:
        server.stop()


@pytest.mark.parametrize("variable, value", [
    ("SAGEMAKER_TS_BATCH_SIZE", "many"),
    ("SDSERVE_MODEL_DIR", "/x"),  # the entrypoint reads no such variable: a typo must not pass unnoticed
    ("SDSERVE_METRICS", "on"),  # emf or off
])
def test_bad_entrypoint_environment_exits_2(tmp_path, sagemaker_model_dir, plugins_dir, variable, value):
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir, env={variable: value})
    assert server.process.wait(30) == 2
    server.stop()
    assert variable in server.output()


def test_a_tmpdir_too_deep_for_the_workers_sockets_exits_2_naming_the_fix(tmp_path, sagemaker_model_dir,
                                                                           plugins_dir):
    """Rather than start TorchServe with workers that die at bind, forever (the limit: 107 bytes on Linux)."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir, env={"TMPDIR": str(deep)})
    assert server.process.wait(30) == 2
    server.stop()
    assert "too deep for a worker's Unix socket" in server.output() and "point TMPDIR at" in server.output()
    assert not list(deep.iterdir())  # its temporary folder went too


def test_missing_model_exits_3(tmp_path, plugins_dir):
    server = ServeEntrypoint(tmp_path, tmp_path, plugins_dir)
    assert server.process.wait(30) == 3
    server.stop()
    assert "MAR-INF" in server.output()


def wait_for_worker(server: ServeEntrypoint, timeout: float = 120) -> None:
    """Until the worker has said how its load went (ready or failed), by the state files /ping reads too."""
    wait_until(lambda: server.readiness().ready or server.readiness().failed, timeout, 0.2,
               what="the worker to report")


def test_model_that_fails_to_load_keeps_ping_unhealthy_and_fails_fast(tmp_path, sagemaker_model_dir, plugins_dir):
    broken = tmp_path / "model"
    shutil.copytree(sagemaker_model_dir, broken)
    for weights in (broken / "model" / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    server = ServeEntrypoint(broken, tmp_path, plugins_dir)
    try:
        wait_for_worker(server)
        ping = http("GET", f"{server.url}/ping", content_type=None)
        assert ping.status == 503 and "failed to load" in ping.json()["reason"]
        started = time.monotonic()
        reply = post_json(f"{server.url}/invocations", {"prompt": "a cat"}, timeout=30)
        assert reply.status == 503 and time.monotonic() - started < 10
        assert reply.json()["type"] == "ModelLoadFailed"
        assert "MODEL LOAD FAILED" in server.output() + "".join(
            p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    finally:
        server.stop()


def test_sigterm_lets_the_in_flight_request_finish_and_exits_0(tmp_path, sagemaker_model_dir, plugins_dir):
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir)
    wait_until(lambda: server.ping() == 200 or server.process.poll() is not None, 180, 0.1, what="ready")
    result = {}

    # Two 1024x1024 images: about 5 s of CPU work on two idle cores, so still running when SIGTERM comes and
    # done inside the 25 s drain on a busy machine too (four took over 25 s there).
    def slow_request():
        result["reply"] = post_json(f"{server.url}/invocations",
                                    {"prompt": "a cat", "num_images": 2, "width": 1024, "height": 1024}, timeout=60)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is in the worker now
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(30)
    thread.join(30)
    server.stop()
    assert code == 0, server.output()[-2000:]
    assert time.monotonic() - sent < 30
    assert result["reply"].status == 200
    assert len(result["reply"].json()["images"]) == 2
    assert "stopped cleanly" in server.output()


# What SageMaker or a user may set that must stop the worker from serving, and the words that name the cause.
REFUSED_ENVIRONMENTS = [
    # a GPU instance whose CUDA does not work (the stack sets SDTURBO_DEVICE=cuda on GPU instance types)
    ({"SDTURBO_DEVICE": "cuda"}, "CUDA is not usable"),
    # a typo in an engine override: SDTURBO_CUDA_GRAPHS is the setting
    ({"SDTURBO_CUDA_GRAPH": "false"}, "SDTURBO_CUDA_GRAPH"),
]


@pytest.mark.parametrize("env, cause", REFUSED_ENVIRONMENTS, ids=["cuda-required", "unknown-setting"])
def test_worker_that_must_not_serve_answers_503_naming_the_cause(tmp_path, sagemaker_model_dir, plugins_dir,
                                                                  env, cause):
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir, env=env)
    try:
        wait_for_worker(server, timeout=60)
        ping = http("GET", f"{server.url}/ping", content_type=None)
        assert ping.status == 503 and "failed to load" in ping.json()["reason"], ping.body
        for _ in range(2):  # every request, not only the first
            started = time.monotonic()
            reply = post_json(f"{server.url}/invocations", {"prompt": "a cat"}, timeout=30)
            assert reply.status == 503 and time.monotonic() - started < 10
            assert reply.json()["type"] == "ModelLoadFailed" and cause in reply.json()["message"]
    finally:
        server.stop()


def test_a_worker_killed_mid_batch_does_not_hold_up_sigterm(tmp_path, sagemaker_model_dir, plugins_dir):
    """A worker killed while it runs a batch leaves its busy marker behind. The drain must see that nobody
    is running that batch any more: an idle server stops at once, not after the full 25 s drain (plus the
    stop wait, over SageMaker's 30 s between SIGTERM and SIGKILL)."""
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path, plugins_dir)
    try:
        wait_until(lambda: server.ping() == 200 or server.process.poll() is not None, 180, 0.1, what="ready")
        state_dir, result = server.state_dir(), {}
        thread = threading.Thread(target=lambda: result.update(reply=post_json(
            f"{server.url}/invocations", {"prompt": "a cat", "num_images": 2, "width": 1024, "height": 1024},
            timeout=60)))
        thread.start()
        marker = wait_until(lambda: next(state_dir.glob("*.busy"), None), 30, 0.05, what="a busy worker")
        os.kill(int(marker.stem), signal.SIGKILL)
        thread.join(60)
        assert 500 <= result["reply"].status < 600
        assert marker.exists(), "the dead worker's marker is what this test is about"
        wait_until(lambda: server.ping() == 200, 120, 0.2, what="a new worker")  # idle again
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(40)
        took = time.monotonic() - sent
    finally:
        server.stop()
    assert code == 0 and took < 10, (code, took, server.output()[-1500:])


@pytest.mark.parametrize("fmt", ["no-archive", "zip-store"])
def test_the_entrypoints_temporary_folder_is_removed_on_exit(tmp_path, tiny_sd_dir, plugins_dir, fmt):
    """Its folder holds TorchServe's own files and, for a .mar, the unpacked archive (2.6 GB with the real
    model): all of it goes when the container stops, and when it refuses to start."""
    store = tmp_path / "store"
    build_archive(tiny_sd_dir, store, fmt=fmt)
    model_dir = store if fmt == "zip-store" else store / "sdturbo"  # a folder holding one .mar, or the archive
    server = ServeEntrypoint(model_dir, tmp_path, plugins_dir)
    try:
        wait_until(lambda: server.ping() == 200 or server.process.poll() is not None, 180, 0.1, what="ready")
        assert server.ping() == 200, server.output()[-1500:]
        used = sum(1 for _ in server.state_dir().rglob("*"))
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(40) == 0
    finally:
        server.stop()
    assert used and not server.left_behind, server.left_behind[:5]
    empty, again = tmp_path / "empty", tmp_path / "again"
    empty.mkdir()
    again.mkdir()
    refused = ServeEntrypoint(empty, again, plugins_dir)  # no model in it: exit 3, after the folder was made
    assert refused.process.wait(30) == 3
    refused.stop()
    assert not refused.left_behind
