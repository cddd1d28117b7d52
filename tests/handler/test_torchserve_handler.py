"""The TorchServe adapter, driven the way TorchServe's worker drives it, with its real Context class."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest
from ts.context import Context, RequestProcessor
from PIL import Image
from ts.metrics.metrics_store import MetricsStore

from handler.torchserve_handler import SDTurboHandler
from tests.support.helpers import decode_image


def make_context(model_root, handler_settings):
    context = Context("sdturbo", str(model_root), {"model": {}}, 4, None, "0.12.0",
                      metrics=MetricsStore(uuid.uuid4(), "sdturbo"),
                      model_yaml_config={"handler": handler_settings})
    return context


def batch(context, *requests):
    """Rows and per-request headers as ts.service builds them from the wire protocol: each request is
    (body, content type) or (body, content type, Accept)."""
    rows, processors = [], []
    for body, content_type, *accept in requests:
        rows.append({"body": body})
        headers = {"Content-Type": content_type} if content_type else {}
        if accept:
            headers["Accept"] = accept[0]
        processors.append(RequestProcessor({"body": {"content-type": content_type or ""}, **headers}))
    context.request_processor = processors
    return rows


@pytest.fixture(scope="module")
def served(tiny_sd_dir):
    handler = SDTurboHandler()
    context = make_context(tiny_sd_dir.parent, {"model_dir": tiny_sd_dir.name, "device": "cpu", "warmup": True})
    handler.initialize(context)
    assert handler.engine is not None, handler.load_error
    return handler, context


def test_batch_mixing_good_and_bad_requests_gets_per_request_statuses(served):
    handler, context = served
    rows = batch(context,
                 (b'{"prompt": "a cat", "seed": 1}', "application/json"),
                 (b'{"prompt": ""}', "application/json"),
                 (b'{"prompt": "a cat", "seed": 1}', None),              # SageMaker raw bytes
                 (b'{"prompt": "a cat"}', "image/png"))
    replies = handler.handle(rows, context)
    statuses = [context.get_response_status(i)[0] for i in range(4)]
    assert statuses == [200, 400, 200, 415]
    bodies = [json.loads(r) for r in replies]
    assert decode_image(bodies[0]["image"]).size == (512, 512)
    assert bodies[0]["image"] == bodies[2]["image"]
    assert bodies[1]["errors"][0]["field"] == "prompt"
    assert all(context.get_response_content_type(i) == "application/json" for i in range(4))


def test_explain_header_cannot_switch_the_batch_mode(served):
    handler, context = served
    rows = [{"body": b'{"prompt": "a cat", "seed": 1}'}]
    context.request_processor = [RequestProcessor({"Content-Type": "application/json", "explain": "True"})]
    handler.handle(rows, context)
    assert context.get_response_status(0)[0] == 200


def test_model_that_fails_to_load_answers_503_at_once(tmp_path):
    handler = SDTurboHandler()
    context = make_context(tmp_path, {"model_dir": "missing", "device": "cpu"})
    handler.initialize(context)  # does not raise: the worker must stay up to answer
    rows = batch(context, (b'{"prompt": "a cat"}', "application/json"), (b"{}", "application/json"))
    replies = [json.loads(r) for r in handler.handle(rows, context)]
    assert [context.get_response_status(i)[0] for i in range(2)] == [503, 503]
    assert replies[0]["type"] == "ModelLoadFailed" and "model_index.json" in replies[0]["message"]


def test_invalid_settings_fail_the_load_with_the_field_named(tmp_path):
    handler = SDTurboHandler()
    handler.initialize(make_context(tmp_path, {"devise": "cpu"}))
    assert "devise" in handler.load_error


@pytest.mark.slow
def test_accept_image_replies_with_the_image_itself_and_its_seed_in_headers(served):
    handler, context = served
    rows = batch(context,
                 (b'{"prompt": "a cat", "seed": 1}', "application/json", "image/png"),
                 (b'{"prompt": "a cat", "seed": 1}', "application/json"),
                 (b'{"prompt": "a cat", "seed": 1, "width": 256}', "application/json", "image/webp"))
    replies = handler.handle(rows, context)
    assert [context.get_response_status(i)[0] for i in range(3)] == [200, 200, 200]
    assert [context.get_response_content_type(i) for i in range(3)] == ["image/png", "application/json", "image/webp"]
    assert replies[0] == base64.b64decode(json.loads(replies[1])["image"])  # the same image, without base64
    headers = context.get_response_headers(2)
    assert (headers["X-Seed"], headers["X-Image-Width"], headers["X-Image-Height"]) == ("1", "256", "512")
    assert Image.open(io.BytesIO(replies[2])).format == "WEBP"  # the Accept header picked the format


# Accept -> the status and content type the adapter answers with; every error is JSON.
ACCEPT_CASES = [
    ({"prompt": "a cat"}, "image/jpeg", 200, "image/jpeg"),
    ({"prompt": "a cat"}, "*/*", 200, "application/json"),
    ({"prompt": "a cat", "output_format": "webp"}, "image/*", 200, "image/webp"),
    ({"prompt": "a cat"}, "image/gif", 406, "application/json"),
    ({"prompt": "a cat", "output_format": "jpeg"}, "image/png", 406, "application/json"),
    ({"prompt": "a cat", "num_images": 2}, "image/png", 406, "application/json"),
    ({"prompt": "a cat", "num_images": 2}, "image/png, application/json;q=0.5", 200, "application/json"),
    ({"prompt": ""}, "image/png", 400, "application/json"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("body", "accept", "status", "content_type"), ACCEPT_CASES)
def test_accept_picks_the_reply_and_errors_stay_json(served, body, accept, status, content_type):
    handler, context = served
    [reply] = handler.handle(batch(context, (json.dumps({"seed": 3, **body}).encode(), "application/json", accept)),
                             context)
    assert (context.get_response_status(0)[0], context.get_response_content_type(0)) == (status, content_type)
    if content_type == "application/json":
        assert json.loads(reply)["code" if status != 200 else "seed"] == (status if status != 200 else 3)
    if status == 406:
        assert json.loads(reply)["errors"][0]["field"] == "Accept"


def test_the_hooks_pass_a_batch_on_through_their_return_values_only(served):
    """What preprocess learns about a request (its reply's form) and the engine's stage times travel with the
    batch (``Pending``, ``Answered``); the handler keeps nothing of a batch between hooks."""
    handler, context = served
    kept = {name: value for name, value in vars(handler).items() if name != "context"}
    rows = batch(context, (b'{"prompt": "a cat", "seed": 1, "width": 256}', "application/json", "image/png"),
                 (b'{"prompt": ""}', "application/json"))
    handler.handle(rows, context)
    assert {name: value for name, value in vars(handler).items() if name != "context"} == kept
    assert all(value is kept[name] for name, value in vars(handler).items() if name != "context")


def test_each_batch_logs_its_timings_line_for_the_benchmarks_breakdown(served, caplog):
    """scripts/sdturbo_ops/breakdown.py reads these fields: their names and order are the line's contract."""
    handler, context = served
    caplog.set_level("INFO", logger="handler.torchserve_handler")
    handler.handle(batch(context, (b'{"prompt": "a cat", "seed": 1, "width": 256}', "application/json")), context)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("batch timings "))
    timings = json.loads(line.removeprefix("batch timings "))
    assert list(timings) == ["requests", "received", "preprocess_ms", "generate_ms", "decode_ms", "encode_ms",
                             "reply_ms", "inference_ms", "postprocess_ms", "returned"]
    assert timings["requests"] == 1 and timings["returned"] >= timings["received"]


def test_the_module_defines_one_class_as_torchserve_requires():
    """TorchServe loads the handler file's only class and refuses to load a file that defines two."""
    import handler.torchserve_handler as module
    from ts.utils.util import list_classes_from_module

    assert list_classes_from_module(module) == [SDTurboHandler]


def test_a_workers_start_time_is_when_its_process_started():
    """The benchmark splits launch -> READY at this stamp; psutil's create_time was 0.85 s early here (the
    boot time it adds is whole seconds), which made the frontend's phase negative."""
    import subprocess
    import sys
    import time

    from tests.support.helpers import REPO

    before = time.time()
    said = subprocess.run([sys.executable, "-c", "from handler.torchserve_handler import process_start_time; "
                           "print(process_start_time())"], cwd=REPO, capture_output=True, text=True, check=True)
    after = time.time()
    started = float(said.stdout)
    assert before - 0.02 <= started <= after, (started - before, after - before)  # 0.02: the 10 ms tick
