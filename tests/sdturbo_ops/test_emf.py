"""The container's CloudWatch records (sdturbo_ops/emf.py): built by aws-embedded-metrics, checked against the
format's specification (tests/support/emf.py), written whole, from the workers' measurements only."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from handler.emf import MetricsChannel
from handler.jobs import Reply
from sdturbo_ops import emf
from tests.support import emf as spec
from tests.support.helpers import wait_until

DIMENSIONS = {"Endpoint": "sdturbo", "Model": "sd-turbo", "InstanceType": "ml.g4dn.2xlarge"}
NOW = time.time()
BATCH = {"event": "batch", "requests": 3, "received": NOW - 0.25, "preprocess_ms": 0.4, "generate_ms": 120.5,
         "decode_ms": 30.1, "encode_ms": 4.2, "reply_ms": 1.1, "inference_ms": 160.0, "postprocess_ms": 0.2,
         "returned": NOW, "status": {"2xx": 2, "4xx": 1, "5xx": 0}, "images": 5, "gpu_peak_mib": 6123.4}
STARTUP = {"event": "startup", "ok": True, "process_started": NOW - 30, "initialize": NOW - 25, "loaded": NOW - 10,
           "warm": NOW - 2, "gpu_peak_mib": 7000.0}


def one_record(metrics, event="batch"):
    lines = emf.records(DIMENSIONS, metrics, NOW, {"Event": event})
    assert len(lines) == 1
    (record,) = spec.records(lines[0])
    return record


def test_a_batch_record_follows_the_specification_with_every_stage():
    record = one_record(emf.batch_metrics(BATCH))
    assert {key: record[key] for key in DIMENSIONS} == DIMENSIONS
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == emf.NAMESPACE
    assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(DIMENSIONS)]
    assert abs(record["_aws"]["Timestamp"] - NOW * 1000) <= 1
    assert spec.metrics(record) == {
        "BatchSize": 3, "Images": 5, "Requests2XX": 2, "Requests4XX": 1, "Requests5XX": 0, "PreprocessTime": 0.4,
        "GenerateTime": 120.5, "DecodeTime": 30.1, "EncodeTime": 4.2, "ReplyTime": 1.1, "PostprocessTime": 0.2,
        "HandlerTime": 250.0, "GpuMemoryPeak": 6123.4}


def test_a_batch_of_refused_requests_has_no_engine_stages():
    record = one_record(emf.batch_metrics({**BATCH, "generate_ms": None, "decode_ms": "x", "gpu_peak_mib": None,
                                           "status": {"2xx": 0, "4xx": 3, "5xx": 0}, "images": 0}))
    assert "GenerateTime" not in spec.metrics(record) and "DecodeTime" not in spec.metrics(record)
    assert "GpuMemoryPeak" not in spec.metrics(record) and spec.metrics(record)["Requests4XX"] == 3


def test_worker_start_phases_are_seconds_between_its_stamps():
    record = one_record(emf.startup_metrics(STARTUP, entrypoint_started=NOW - 40), "worker-start")
    assert spec.metrics(record) == {"StartupImports": 5.0, "StartupModelLoad": 15.0, "StartupWarmUp": 8.0,
                                    "StartupReady": 38.0, "StartupFailed": 0, "GpuMemoryPeak": 7000.0}


def test_a_worker_that_failed_to_load_counts_as_a_failed_start():
    failed = {"event": "startup", "ok": False, "process_started": NOW - 5, "initialize": NOW - 1}
    assert spec.metrics(one_record(emf.startup_metrics(failed, NOW - 10), "worker-start")) == {
        "StartupImports": 4.0, "StartupFailed": 1}


@pytest.mark.parametrize("environ, expected", [
    ({}, {"Endpoint": "local", "Model": "local", "InstanceType": "local"}),
    ({"SDSERVE_METRICS_ENDPOINT": "sdturbo", "SDSERVE_METRICS_MODEL": "sd-turbo",
      "SDSERVE_METRICS_INSTANCE_TYPE": "ml.g4dn.2xlarge"}, DIMENSIONS),
])
def test_metrics_are_on_by_default_with_local_dimensions_unless_the_stack_names_them(environ, expected):
    assert emf.MetricsSettings.from_environment(environ).dimensions == expected


def test_metrics_can_be_turned_off_and_a_typo_is_refused():
    assert emf.MetricsSettings.from_environment({"SDSERVE_METRICS": "off"}) is None
    with pytest.raises(emf.MetricsConfigError, match="SDSERVE_METRICS='on'"):
        emf.MetricsSettings.from_environment({"SDSERVE_METRICS": "on"})


def test_clocks_come_from_proc(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")
    (tmp_path / "42").mkdir()
    fields = ["S"] + ["0"] * 18 + ["250"] + ["0"] * 20  # field 22 (starttime) is the 20th after ')'
    (tmp_path / "42" / "stat").write_text(f"42 (python3 (x)) {' '.join(fields)}\n")
    assert emf.boot_time(tmp_path) == 1700000000
    ticks = __import__("os").sysconf("SC_CLK_TCK")
    assert emf.process_start_time(42, tmp_path) == pytest.approx(1700000000 + 250 / ticks)
    assert emf.boot_time(tmp_path / "missing") is None


def test_counter_total_sums_a_prometheus_counter_over_its_series():
    text = ('# TYPE ts_queue_latency_microseconds counter\n'
            'ts_queue_latency_microseconds{model_name="sdturbo",model_version="default",hostname="h"} 1500.0\n'
            'ts_queue_latency_microseconds{model_name="other",model_version="default",hostname="h"} 500.0\n'
            'ts_inference_requests_total{model_name="sdturbo",model_version="default",hostname="h"} 4.0\n')
    assert emf.counter_total(text, emf.QUEUE_COUNTER) == 2000.0
    assert emf.counter_total(text, emf.REQUEST_COUNTER) == 4.0
    assert emf.counter_total(text, "absent") is None


# ------------------------------------------------------------------ the relay, as the entrypoint runs it
class FrontendMetrics:
    """TorchServe's metrics port: the two counters, as the test sets them."""

    def __init__(self):
        self.queue_us, self.requests = 0.0, 0.0
        frontend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = (f'ts_queue_latency_microseconds{{model_name="sdturbo"}} {frontend.queue_us}\n'
                        f'ts_inference_requests_total{{model_name="sdturbo"}} {frontend.requests}\n').encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def relay(tmp_path):
    """A relay as the entrypoint makes it, writing to a file of the test's (opened for appending, as a log
    is) instead of the process's standard output."""
    frontend = FrontendMetrics()
    out = tmp_path / "stdout"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    running = emf.MetricsRelay(emf.MetricsSettings(DIMENSIONS), tmp_path, frontend.url,
                               entrypoint_started=NOW - 60, booted=NOW - 300, tick=3600, fd=fd)
    running.frontend, running.out = frontend, out
    running.start()
    yield running
    running.stop()
    os.close(fd)
    frontend.server.shutdown()


def written(relay, count: int, kind: str) -> list[dict]:
    """The records the relay has written so far, once ``count`` of ``kind`` are there."""
    return wait_until(lambda: len(spec.events(spec.records(relay.out.read_text()), kind)) >= count
                      and spec.records(relay.out.read_text()), 10, 0.05, what=f"{count} {kind} record(s)")


def test_worker_measurements_become_records_and_the_cold_start_is_measured_from_boot(relay):
    channel = MetricsChannel(str(relay.path))
    channel.startup({"process_started": NOW - 30, "initialize": NOW - 25, "loaded": NOW - 10, "warm": NOW - 2},
                    engine=type("Engine", (), {"device": None})())
    replies = [Reply(200, {}, (b"a", b"b")), Reply(400, {}), Reply(200, {}, (b"c",))]
    timings = {key: value for key, value in BATCH.items() if key not in ("event", "status", "images", "gpu_peak_mib")}
    channel.batch(timings, replies, device=None)
    channel.batch(timings, replies, device=None)
    found = written(relay, 2, "batch")
    assert channel.dropped == 0
    cold = {name: value for record in spec.events(found, "cold-start") for name, value in spec.metrics(record).items()}
    assert cold == {"ColdStartContainer": 240.0, "ColdStartReady": 298.0, "ColdStartFirstReply": 300.0}
    batch = spec.metrics(spec.events(found, "batch")[0])
    assert (batch["BatchSize"], batch["Images"], batch["Requests2XX"], batch["Requests4XX"]) == (3, 3, 2, 1)
    assert spec.metrics(spec.events(found, "worker-start")[0])["StartupReady"] == 58.0
    assert spec.metrics(spec.events(found, "minute")[0]) == {"InstanceUp": 1}


def test_only_named_numbers_reach_a_record(relay):
    """Whatever else a datagram carries (a prompt, by mistake or malice) is not written."""
    channel = MetricsChannel(str(relay.path))
    channel.send({**BATCH, "prompt": "SECRET-PROMPT", "images": "SECRET-COUNT", "status": {"2xx": "SECRET"}})
    channel.send({"event": "something-else", "prompt": "SECRET-PROMPT"})
    channel.send({**BATCH})
    found = written(relay, 2, "batch")
    assert "SECRET" not in json.dumps(found) and relay.refused == 1


def test_queue_wait_is_the_frontends_mean_per_request_over_the_minute(relay):
    written(relay, 1, "minute")  # the relay's first minute, at start: the counters' first reading (0, 0)
    relay.frontend.queue_us, relay.frontend.requests = 30000.0, 3.0  # 30 ms over 3 requests
    relay.minute()
    relay.minute()  # no request answered in this minute: no queue wait, still an instance
    minutes = [spec.metrics(record) for record in spec.events(written(relay, 3, "minute"), "minute")]
    assert minutes == [{"InstanceUp": 1}, {"InstanceUp": 1, "QueueWait": 10.0}, {"InstanceUp": 1}]


def test_without_a_listener_a_worker_drops_its_measurement_and_goes_on(tmp_path):
    channel = MetricsChannel(str(tmp_path / "nobody.sock"))
    channel.batch({"requests": 1}, [Reply(200, {}, (b"x",))], device=None)
    channel.batch({"requests": 1}, [Reply(200, {}, (b"x",))], device=None)
    assert channel.dropped == 2


def test_write_line_writes_each_line_whole_in_one_write():
    read, write = os.pipe()
    line = json.dumps({"x": "y" * 3000})
    emf.write_line(line, write)
    os.close(write)
    assert os.read(read, 8192).decode() == line + "\n"
