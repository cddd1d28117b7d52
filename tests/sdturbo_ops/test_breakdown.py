"""Splitting a c = 1 request's latency along the served path (sdturbo_ops/breakdown.py), on made-up stamps:
the parts always add up to the measured latency, and each request pairs with its own batch only."""

from __future__ import annotations

import json

import pytest

from sdturbo_ops.breakdown import batch_timings, breakdown, pair, queue_microseconds, split
from sdturbo_ops.load import Outcome


def timings(received: float, **stages) -> dict:
    steps = {"preprocess_ms": 0.5, "generate_ms": 20.0, "decode_ms": 8.0, "encode_ms": 3.0, "reply_ms": 1.0,
             "inference_ms": 33.0, "postprocess_ms": 1.5, **stages}
    inside = steps["preprocess_ms"] + steps["inference_ms"] + steps["postprocess_ms"]
    return {"requests": 1, "received": received, **steps, "returned": received + inside / 1000}


def outcome(sent_at: float, seconds: float, status: int = 200) -> Outcome:
    return Outcome(status, seconds, 1, 1000, sent_at, sent_at + seconds)


def test_the_segments_add_up_to_the_latency_the_client_measured():
    request, batch = outcome(100.0, 0.046), timings(100.006)
    parts = split(request, batch)
    assert list(parts) == ["to_handler", "preprocess", "generate", "decode", "encode", "reply", "engine_other",
                           "postprocess", "from_handler"]
    assert sum(parts.values()) == pytest.approx(46.0, abs=0.02)
    assert parts["to_handler"] == pytest.approx(6.0, abs=0.01)
    assert parts["engine_other"] == pytest.approx(1.0)  # 33 ms of inference, 32 of it in the stages
    assert parts["from_handler"] == pytest.approx(46.0 - 6.0 - 35.0, abs=0.02)


def test_each_request_pairs_with_the_lone_batch_inside_it_and_nothing_else():
    requests = [outcome(10.0, 0.05), outcome(10.06, 0.05), outcome(10.2, 0.05, status=503)]
    batches = [timings(10.01), {**timings(10.07), "requests": 2}, timings(10.2)]
    pairs = pair(requests, batches)
    assert pairs == [(requests[0], batches[0])]  # a two-request batch and a failed request pair with nothing


def test_the_median_request_is_reported_whole_and_the_queue_is_carved_out_of_the_way_in():
    requests = [outcome(float(i), 0.040 + i / 1000) for i in range(5)]
    batches = [timings(i + 0.005) for i in range(5)]
    result = breakdown(requests, batches, queue_ms=1.2)
    assert result["paired_requests"] == 5
    assert result["p50_ms"] == pytest.approx(42.0)  # the third of 40..44 ms
    assert sum(result["p50_request"].values()) == pytest.approx(result["p50_ms"], abs=0.05)
    assert result["frontend_queue_mean_ms"] == 1.2
    assert result["to_handler_without_queue_mean_ms"] == pytest.approx(5.0 - 1.2, abs=0.01)
    assert breakdown([], batches, None) == {}


def test_timings_lines_are_read_once_each_even_when_a_log_repeats_them():
    line = "batch timings " + json.dumps(timings(5.0))
    text = f"2026 [INFO ] W-9000 MODEL_LOG - {line}\n{line}\nother\n" + "x " + "batch timings " + json.dumps(timings(6.0))
    assert [entry["received"] for entry in batch_timings(text)] == [5.0, 6.0]


def test_the_queue_counter_is_read_from_prometheus_text():
    text = ('# TYPE ts_queue_latency_microseconds counter\n'
            'ts_queue_latency_microseconds{model_name="sdturbo",model_version="default",hostname="vm",} 1383.5\n'
            'ts_inference_latency_microseconds{model_name="sdturbo",} 9.0\n')
    assert queue_microseconds(text) == 1383.5
    assert queue_microseconds("# nothing yet\n") is None
