"""Where one request's time goes: a c = 1 sweep's latencies split along the served path.

Three clocks meet on one machine (epoch seconds): the client's (when it sent a request and when it had read
the reply), the handler's (its ``batch timings`` log line: when it got the batch and handed it back, and
the milliseconds of each step between), and TorchServe's frontend (the mean time a request waited in its
queue before a worker took it, from the ``ts_queue_latency_microseconds`` counter, which includes the
batch delay: at c = 1 a lone request waits ``maxBatchDelay`` for company that never comes).

At c = 1 every batch holds one request, so each client request pairs with the handler line whose
``received`` falls inside it. A request's latency is then, exactly:

    to the handler   client -> frontend, queue and batch delay, frontend -> worker (socket, decoding)
    preprocess       parsing the body and the Accept header
    generate, decode, encode, reply   the engine's stages (reply: the JSON body, images in base64)
    engine other     the engine's own work between its stages (admitting, grouping)
    postprocess      status, headers and the reply's bytes (JSON serialisation)
    from the handler worker -> frontend (TorchServe's reply framing, socket), frontend -> client, reading

and "to the handler" is split further with the frontend's mean queue time.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence

from sdturbo_ops.load import Outcome

_TIMINGS = re.compile(r"batch timings (\{[^}]*\})")
_QUEUE_COUNTER = re.compile(r'^ts_queue_latency_microseconds\{[^}]*\}\s+([0-9.eE+-]+)', re.MULTILINE)
ENGINE_STAGES = ("generate", "decode", "encode", "reply")


def batch_timings(log_text: str) -> list[dict]:
    """Every ``batch timings`` line the handler logged, once each, in order (a server's log text can hold
    a worker's line more than once: TorchServe writes it to its own log and to the model log)."""
    seen, timings = set(), []
    for match in _TIMINGS.findall(log_text):
        if match not in seen:
            seen.add(match)
            timings.append(json.loads(match))
    return timings


def queue_microseconds(metrics_text: str) -> float | None:
    """The frontend's ``ts_queue_latency_microseconds`` counter (summed over its series) from the metrics
    port's Prometheus text; None when absent."""
    values = [float(value) for value in _QUEUE_COUNTER.findall(metrics_text)]
    return sum(values) if values else None


def split(outcome: Outcome, timings: dict) -> dict[str, float]:
    """One request's latency in milliseconds along the path (the module docstring's segments); the
    segments sum to the request's latency."""
    stages = {stage: float(timings.get(f"{stage}_ms", 0.0)) for stage in ENGINE_STAGES}
    segments = {"to_handler": (timings["received"] - outcome.sent_at) * 1000,
                "preprocess": float(timings["preprocess_ms"]), **stages,
                "engine_other": float(timings["inference_ms"]) - sum(stages.values()),
                "postprocess": float(timings["postprocess_ms"]),
                "from_handler": (outcome.received_at - timings["returned"]) * 1000}
    # The client timed its request with a monotonic clock; the epoch stamps above may differ from it by
    # the clock's resolution: the last segment absorbs that, so the parts add up to the measured latency.
    segments["from_handler"] += outcome.seconds * 1000 - sum(segments.values())
    return {name: round(value, 2) for name, value in segments.items()}


def pair(outcomes: Sequence[Outcome], timings: Sequence[dict]) -> list[tuple[Outcome, dict]]:
    """Each successful request with the one-request batch the handler got while it was in flight."""
    pairs = []
    lone = [entry for entry in timings if entry.get("requests") == 1]
    for outcome in outcomes:
        if outcome.status != 200:
            continue
        inside = [entry for entry in lone if outcome.sent_at <= entry["received"] <= outcome.received_at]
        if len(inside) == 1:
            pairs.append((outcome, inside[0]))
    return pairs


def breakdown(outcomes: Sequence[Outcome], timings: Sequence[dict], queue_ms: float | None) -> dict:
    """The c = 1 split: the median request's segments (they sum to the p50 latency), each segment's mean
    over all paired requests, and the frontend's mean queue time (batch delay included) carved out of
    "to the handler"."""
    pairs = pair(outcomes, timings)
    if not pairs:
        return {}
    rows = sorted(((outcome.seconds * 1000, split(outcome, entry)) for outcome, entry in pairs),
                  key=lambda row: row[0])
    latency_ms, median = rows[round((len(rows) - 1) / 2)]  # the rank percentile(…, 50) takes
    means = {name: round(statistics.mean(row[name] for _, row in rows), 2) for name in median}
    result = {"paired_requests": len(rows), "p50_ms": round(latency_ms, 2), "p50_request": median,
              "mean_ms": means, "mean_latency_ms": round(statistics.mean(latency for latency, _ in rows), 2)}
    if queue_ms is not None:
        result["frontend_queue_mean_ms"] = round(queue_ms, 2)
        result["to_handler_without_queue_mean_ms"] = round(means["to_handler"] - queue_ms, 2)
    return result
