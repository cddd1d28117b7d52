"""The TorchServe adapter, driven the way TorchServe's worker drives it, with its real Context class."""

from __future__ import annotations

import json
import uuid

import pytest
from ts.context import Context, RequestProcessor
from ts.metrics.metrics_store import MetricsStore

from handler.torchserve_handler import SDTurboHandler
from tests.support.helpers import decode_image


def make_context(model_root, handler_settings):
    context = Context("sdturbo", str(model_root), {"model": {}}, 4, None, "0.12.0",
                      metrics=MetricsStore(uuid.uuid4(), "sdturbo"),
                      model_yaml_config={"handler": handler_settings})
    return context


def batch(context, *requests):
    """Rows and per-request headers as ts.service builds them from the wire protocol."""
    rows, processors = [], []
    for body, content_type in requests:
        rows.append({"body": body})
        processors.append(RequestProcessor({"body": {"content-type": content_type or ""},
                                            **({"Content-Type": content_type} if content_type else {})}))
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
