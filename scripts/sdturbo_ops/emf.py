"""The container's CloudWatch metrics: embedded-metric-format (EMF) records on its standard output.

SageMaker sends a container's standard output to the endpoint's log group, and CloudWatch Logs extracts
metrics from every log event that is an EMF document, with no call to CloudWatch and no header needed
(AWS, "Using the PutLogEvents API to send manually-created embedded metric format logs"). A record must be
one whole JSON object, alone in its log event (AWS, "Specification: Embedded metric format", Root node).

Where the records are written, and why: TorchServe reads each worker's output and logs it line by line
behind a prefix of its own (time, level, worker), so a record a worker printed would not be a JSON object
any more. The serve entrypoint owns the container's standard output; its :class:`MetricsRelay` listens on
a Unix datagram socket in its state folder, each worker sends its measurements there (handler/emf.py), and
the relay writes each record as one line with one ``write`` (shorter than ``PIPE_BUF``, so it cannot be
interleaved with a line of TorchServe's, which writes to the same pipe). The entrypoint's own lines go
out the same way (:func:`say`).

The records (namespace ``sdturbo-serve``; dimensions ``Endpoint``, ``Model``, ``InstanceType``):

- per batch (a worker's ``batch timings``): ``BatchSize``, ``Images``, ``Requests2XX``/``4XX``/``5XX``
  (each reply's status class), ``PreprocessTime``, ``GenerateTime``, ``DecodeTime``, ``EncodeTime``,
  ``ReplyTime``, ``PostprocessTime``, ``HandlerTime`` (ms), ``GpuMemoryPeak`` (MiB, on CUDA);
- per minute: ``InstanceUp`` (1: instance-hours are its sum / 60) and ``QueueWait``, the mean ms a
  request waited in TorchServe's queue (its ``ts_queue_latency_microseconds`` counter, batch delay
  included). TorchServe hands a worker no request's arrival time, so no per-batch value exists;
- per worker start (a worker's ``startup timings``): ``StartupImports``, ``StartupModelLoad``,
  ``StartupWarmUp`` (s), ``StartupReady`` (s from the entrypoint's start to that worker's ready),
  ``StartupFailed``, ``GpuMemoryPeak``;
- per container, its cold start measured from the instance's boot (the kernel's ``btime``):
  ``ColdStartContainer`` (boot to this entrypoint: instance start, image pull, model data copy),
  ``ColdStartReady`` (to the first worker ready) and ``ColdStartFirstReply`` (to the first batch answered).

Only numbers a worker measured become metrics, by name from the lists here: no prompt or other request
text can reach a record. The records are built with ``aws-embedded-metrics`` (the library AWS keeps for
this format: it validates names, units, dimensions and timestamps and splits over-long records).

On by default in the entrypoint (``SDSERVE_METRICS=emf``), off with ``SDSERVE_METRICS=off``; a server
started without the entrypoint (``make serve``) never has the socket, so it writes none.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sdturbo_ops.processes import MAX_SOCKET_PATH, fits_a_unix_socket

NAMESPACE = "sdturbo-serve"
METRICS_ENV = "SDSERVE_METRICS"  # "emf" (default) or "off"
# The dimensions' values; the stack sets them (infra/sagemaker.tf), a container run by hand gets "local".
DIMENSION_ENV = {"Endpoint": "SDSERVE_METRICS_ENDPOINT", "Model": "SDSERVE_METRICS_MODEL",
                 "InstanceType": "SDSERVE_METRICS_INSTANCE_TYPE"}
SOCKET_ENV = "SDSERVE_METRICS_SOCKET"  # set for the workers (handler/emf.py reads it)
KNOWN_ENV = (METRICS_ENV, *DIMENSION_ENV.values(), SOCKET_ENV)
LOCAL = "local"
SOCKET_NAME = "metrics.sock"
TICK_SECONDS = 60.0
MAX_DATAGRAM = 65536

# Each batch measurement (handler/torchserve_handler.py's ``batch timings`` keys) -> metric name, in ms.
BATCH_STAGES = {"preprocess_ms": "PreprocessTime", "generate_ms": "GenerateTime", "decode_ms": "DecodeTime",
                "encode_ms": "EncodeTime", "reply_ms": "ReplyTime", "postprocess_ms": "PostprocessTime"}
STATUS_CLASSES = {"2xx": "Requests2XX", "4xx": "Requests4XX", "5xx": "Requests5XX"}
# A worker start's phases: metric name -> (from stamp, to stamp) of its ``startup timings``.
STARTUP_PHASES = {"StartupImports": ("process_started", "initialize"),
                  "StartupModelLoad": ("initialize", "loaded"), "StartupWarmUp": ("loaded", "warm")}
# Every metric name a record can carry (the stack's dashboard and alarm read these: tests/infra/test_metrics.py).
METRIC_NAMES = frozenset(("BatchSize", "Images", *STATUS_CLASSES.values(), *BATCH_STAGES.values(), "HandlerTime",
                          "GpuMemoryPeak", "InstanceUp", "QueueWait", *STARTUP_PHASES, "StartupReady", "StartupFailed",
                          "ColdStartContainer", "ColdStartReady", "ColdStartFirstReply"))
QUEUE_COUNTER = "ts_queue_latency_microseconds"
REQUEST_COUNTER = "ts_inference_requests_total"


class MetricsConfigError(ValueError):
    """An SDSERVE_METRICS* setting is invalid; the message names it."""


@dataclass(frozen=True)
class MetricsSettings:
    dimensions: dict[str, str]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> MetricsSettings | None:
        """The records' dimensions, or None when metrics are off.

        Raises:
            MetricsConfigError: SDSERVE_METRICS is neither ``emf`` nor ``off``, or a dimension is empty
                or longer than CloudWatch takes (1024 characters).
        """
        mode = environ.get(METRICS_ENV, "emf")
        if mode not in ("emf", "off"):
            raise MetricsConfigError(f"{METRICS_ENV}={mode!r}: use emf (the default) or off")
        if mode == "off":
            return None
        dimensions = {name: environ.get(variable) or LOCAL for name, variable in DIMENSION_ENV.items()}
        for name, value in dimensions.items():
            if len(value) > 1024 or not value.isprintable():
                raise MetricsConfigError(f"{DIMENSION_ENV[name]}={value[:40]!r}...: a dimension value is at most "
                                         "1024 printable characters")
        return cls(dimensions)


# ------------------------------------------------------------------ output: whole lines, one write each
_write_lock = threading.RLock()  # reentrant: a signal handler may write while the main thread does


def write_line(text: str, fd: int = 1) -> None:
    """``text`` and a newline in one ``write`` where the system takes it whole (a pipe takes up to
    PIPE_BUF, 4096 bytes, atomically), so another writer's line cannot land inside it."""
    data = (text + "\n").encode()
    with _write_lock:
        while data:
            data = data[os.write(fd, data):]


def say(message: str) -> None:
    """The entrypoint's own status line (``serve: ...``), written like the records."""
    write_line(message)


# ------------------------------------------------------------------ records
def records(dimensions: Mapping[str, str], metrics: list[tuple[str, float, str]], at: float,
            properties: Mapping[str, object] | None = None) -> list[str]:
    """EMF documents for ``metrics`` (name, value, CloudWatch unit) at epoch ``at``; usually one.

    Raises:
        aws_embedded_metrics.exceptions.InvalidMetricError (and its siblings): a name, unit or value
            CloudWatch would refuse.
    """
    from aws_embedded_metrics.logger.metrics_context import MetricsContext
    from aws_embedded_metrics.serializers.log_serializer import LogSerializer

    context = MetricsContext(namespace=NAMESPACE)
    context.set_dimensions([dict(dimensions)])
    context.set_timestamp(datetime.fromtimestamp(at, tz=timezone.utc))
    for key, value in (properties or {}).items():
        context.set_property(key, value)
    for name, value, unit in metrics:
        context.put_metric(name, value, unit)
    return LogSerializer.serialize(context)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def batch_metrics(event: Mapping[str, object]) -> list[tuple[str, float, str]]:
    """A worker's batch measurement as metrics; what is missing or not a number is left out."""
    metrics = []
    for key, name, unit in (("requests", "BatchSize", "Count"), ("images", "Images", "Count")):
        if (value := _number(event.get(key))) is not None:
            metrics.append((name, value, unit))
    statuses = event.get("status") if isinstance(event.get("status"), Mapping) else {}
    for key, name in STATUS_CLASSES.items():
        if (value := _number(statuses.get(key))) is not None:
            metrics.append((name, value, "Count"))
    for key, name in BATCH_STAGES.items():
        if (value := _number(event.get(key))) is not None:
            metrics.append((name, value, "Milliseconds"))
    received, returned = _number(event.get("received")), _number(event.get("returned"))
    if received is not None and returned is not None:
        metrics.append(("HandlerTime", round((returned - received) * 1000, 3), "Milliseconds"))
    if (peak := _number(event.get("gpu_peak_mib"))) is not None:
        metrics.append(("GpuMemoryPeak", peak, "Megabytes"))
    return metrics


def startup_metrics(event: Mapping[str, object], entrypoint_started: float) -> list[tuple[str, float, str]]:
    """A worker start as metrics: its phases (seconds) and, once it is warm, how long after the
    entrypoint started; ``StartupFailed`` 1 when its model did not load."""
    metrics = []
    for name, (begin, end) in STARTUP_PHASES.items():
        first, last = _number(event.get(begin)), _number(event.get(end))
        if first is not None and last is not None:
            metrics.append((name, round(last - first, 3), "Seconds"))
    ok = event.get("ok") is True
    warm = _number(event.get("warm"))
    if ok and warm is not None:
        metrics.append(("StartupReady", round(warm - entrypoint_started, 3), "Seconds"))
    metrics.append(("StartupFailed", 0.0 if ok else 1.0, "Count"))
    if (peak := _number(event.get("gpu_peak_mib"))) is not None:
        metrics.append(("GpuMemoryPeak", peak, "Megabytes"))
    return metrics


# ------------------------------------------------------------------ the clocks a cold start is read from
def boot_time(proc: Path = Path("/proc")) -> float | None:
    """When the kernel booted (epoch seconds, ``btime`` of /proc/stat): on an endpoint instance, a fresh
    machine, the start of the instance; None where it cannot be read."""
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_start_time(pid: int | str = "self", proc: Path = Path("/proc")) -> float | None:
    """When process ``pid`` started (epoch seconds): boot time + its start in clock ticks after boot."""
    booted = boot_time(proc)
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after the command's closing parenthesis
    except (OSError, ValueError, IndexError):
        return None
    return None if booted is None else booted + ticks / os.sysconf("SC_CLK_TCK")


def counter_total(metrics_text: str, name: str) -> float | None:
    """A Prometheus counter of TorchServe's metrics port, summed over its series; None when absent."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})?\s+([0-9.eE+-]+)", re.MULTILINE)
    values = [float(value) for value in pattern.findall(metrics_text)]
    return sum(values) if values else None


# ------------------------------------------------------------------ the relay
class MetricsRelay:
    """The entrypoint's side: a datagram socket for the workers, a thread that writes their measurements
    as records, a record each minute, and the cold start's. ``start``/``stop`` bracket TorchServe."""

    def __init__(self, settings: MetricsSettings, state_dir: Path, metrics_url: str | None,
                 entrypoint_started: float | None = None, booted: float | None = None, tick: float = TICK_SECONDS,
                 fd: int = 1):
        """``fd`` is where the records go: the container's standard output."""
        self.dimensions = settings.dimensions
        self.fd = fd
        self.path = state_dir / SOCKET_NAME
        if not fits_a_unix_socket(self.path):
            raise MetricsConfigError(f"{self.path} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes): "
                                     "set a shorter TMPDIR")
        self.metrics_url = metrics_url
        self.entrypoint_started = entrypoint_started or process_start_time() or time.time()
        self.booted = boot_time() if booted is None else booted
        self.tick = tick
        self.socket: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.first_ready = self.first_reply = False
        self.counters: tuple[float, float] | None = None
        self.refused = 0

    @property
    def worker_env(self) -> dict[str, str]:
        return {SOCKET_ENV: str(self.path)}

    def start(self) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        self.socket.settimeout(0.5)
        if self.booted is not None:
            self.emit([("ColdStartContainer", round(self.entrypoint_started - self.booted, 3), "Seconds")],
                      self.entrypoint_started, "cold-start")
        self.thread = threading.Thread(target=self._run, name="emf-relay", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            # Short: SageMaker's 30 s between SIGTERM and SIGKILL belong to the drain. A thread still reading the
            # metrics port is a daemon and ends with the process.
            self.thread.join(2)
        if self.socket is not None:
            self.socket.close()
        self.path.unlink(missing_ok=True)

    def emit(self, metrics: list[tuple[str, float, str]], at: float, event: str) -> None:
        for line in records(self.dimensions, metrics, at, {"Event": event}):
            write_line(line, self.fd)

    def handle(self, data: bytes) -> None:
        """One worker datagram: a batch or a worker start. Anything else is counted and dropped."""
        try:
            event = json.loads(data)
            kind = event.get("event")
        except (ValueError, AttributeError):
            kind = None
        now = time.time()
        if kind == "batch":
            at = _number(event.get("returned")) or now
            self.emit(batch_metrics(event), at, "batch")
            if not self.first_reply and self.booted is not None:
                self.first_reply = True
                self.emit([("ColdStartFirstReply", round(at - self.booted, 3), "Seconds")], at, "cold-start")
        elif kind == "startup":
            at = _number(event.get("warm")) or now
            self.emit(startup_metrics(event, self.entrypoint_started), at, "worker-start")
            if event.get("ok") is True and not self.first_ready and self.booted is not None:
                self.first_ready = True
                self.emit([("ColdStartReady", round(at - self.booted, 3), "Seconds")], at, "cold-start")
        else:
            self.refused += 1

    def minute(self) -> None:
        """``InstanceUp``, and the frontend's mean queue wait over the minute when it answered requests."""
        metrics = [("InstanceUp", 1.0, "Count")]
        counters = self._frontend_counters()
        if counters is not None and self.counters is not None:
            waited, requests = counters[0] - self.counters[0], counters[1] - self.counters[1]
            if requests > 0:
                metrics.append(("QueueWait", round(waited / requests / 1000, 3), "Milliseconds"))
        self.counters = counters or self.counters
        self.emit(metrics, time.time(), "minute")

    def _frontend_counters(self) -> tuple[float, float] | None:
        if not self.metrics_url:
            return None
        try:
            with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        waited, requests = counter_total(text, QUEUE_COUNTER), counter_total(text, REQUEST_COUNTER)
        return None if waited is None or requests is None else (waited, requests)

    def _run(self) -> None:
        next_minute = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() >= next_minute:
                next_minute += self.tick
                self._guarded(self.minute)
            try:
                data = self.socket.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                return
            self._guarded(self.handle, data)

    def _guarded(self, action, *args) -> None:
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - the metrics must never take the server down
            say(f"serve: a metrics record was dropped: {type(exc).__name__}: {exc}")


def start(environ: Mapping[str, str], state_dir: Path, metrics_url: str | None) -> MetricsRelay | None:
    """The relay, listening, when metrics are on (the default); None when ``SDSERVE_METRICS=off``."""
    settings = MetricsSettings.from_environment(environ)
    if settings is None:
        return None
    try:
        relay = MetricsRelay(settings, state_dir, metrics_url)
        relay.start()
    except (MetricsConfigError, OSError) as exc:  # serving goes on without the records, and says so
        say(f"serve: CloudWatch metrics are off: {exc}")
        return None
    return relay
