"""TorchServe adapter: a thin ``BaseHandler`` over the framework-free engine.

A batch from TorchServe goes: ``preprocess`` parses each body (handler/schema.py; an image-to-image image is
decoded there too, by handler/image_input.py) and answers the ones that do not parse with their 4xx right
there, and picks each reply's form from its Accept header (handler/negotiate.py: JSON, or the image itself;
406 when neither will do); ``inference`` hands the valid requests to the engine (handler/engine.py), which
answers each of them; ``postprocess`` sets every reply's status, content type and, for an image, its
headers. The hooks pass everything through their return values: each request travels with its reply's
form (``Pending``, as LitServe carries a per-request context), and the replies with the engine's stage
times (``Answered``; both in handler/jobs.py: TorchServe refuses a handler module that defines a second
class); the handler keeps nothing of a batch between hooks. The stage times become
TorchServe metrics (``GenerateTime``, ``DecodeTime``, ``EncodeTime``, ``ReplyTime``) and log lines.

TorchServe copies this file to the archive root and imports it as a top-level module, so every import
of our own code is absolute (``handler.*``), found in the ``handler/`` package shipped beside it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ts.torch_handler.base_handler import BaseHandler

from handler.emf import MetricsChannel
from handler.engine import Engine
from handler.jobs import Answered, Pending, Reply, error_reply
from handler.negotiate import IMAGE_TYPES, JSON, reply_format
from handler.parse import RequestError, parse_request
from handler.schema import GenerationRequest
from handler.settings import load_settings
from handler.warmup import warm_up
from handler.worker_state import WorkerStateFiles

logger = logging.getLogger(__name__)

# An image reply's headers and the JSON reply's fields they carry (the format is the Content-Type).
IMAGE_HEADERS = {"X-Seed": "seed", "X-Image-Width": "width", "X-Image-Height": "height"}


class SDTurboHandler(BaseHandler):
    """Text-to-image and image-to-image with SD-turbo (or SDXL-turbo): JSON in; base64 images in JSON out,
    or the image itself when the request's Accept header asks for it."""

    def __init__(self):
        super().__init__()
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.state_files = WorkerStateFiles.from_environment()
        # The container's CloudWatch metrics (handler/emf.py); sends nothing outside the serve entrypoint.
        self.metrics_channel = MetricsChannel.from_environment()

    def initialize(self, context):
        """Load the pipeline on CUDA/MPS/CPU and warm it up before TorchServe marks the worker READY.

        A model that cannot load (missing or corrupt weights, bad settings) is not retried: the worker
        stays up in a failed state, logs the reason once, and answers every request at once with a 503
        that carries it. TorchServe would otherwise restart the worker forever while requests queue.
        """
        properties = context.system_properties
        timings = {"process_started": process_start_time(), "initialize": time.time()}
        try:
            settings = load_settings((context.model_yaml_config or {}).get("handler"), os.environ)
            self.engine = Engine.load(Path(properties["model_dir"]), settings, properties.get("gpu_id"))
            timings["loaded"] = time.time()
            if settings.warmup:
                warm_up(self.engine)
            timings["warm"] = time.time()
            # Wall-clock stamps, so scripts/bench.py can split launch -> READY into its phases.
            logger.info("startup timings %s", json.dumps(timings))
        except Exception as exc:  # every load failure is reported the same way; see docstring
            self.engine = None
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("MODEL LOAD FAILED: %s", self.load_error, exc_info=True)
            self.state_files.report("failed", self.load_error)
        else:
            self.state_files.report("ready")
        self.metrics_channel.startup(timings, self.engine)
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context) -> list[bytes]:
        """BaseHandler.handle without its request-header switches (``explain``/``describe``/profiler):
        any caller could set those headers and turn a whole shared batch into another mode.

        Each batch logs one ``batch timings`` line: when the handler got it and handed it back (epoch
        seconds, the clock a client on this machine reads), and the milliseconds of each step between
        (preprocess, the engine's stages, postprocess), so a request's latency can be split along its path
        (scripts/bench.py's c = 1 breakdown)."""
        self.context = context
        received, started = time.time(), time.perf_counter()
        with self.state_files.busy():
            pending = self.preprocess(data)
            parsed = time.perf_counter()
            answered = self.inference(pending)
            inferred = time.perf_counter()
            sent = self.postprocess(answered)
        finished = time.perf_counter()
        context.metrics.add_time("HandlerTime", round((finished - started) * 1000, 2), None, "ms")
        timings = {"requests": len(data), "received": received, "preprocess_ms": _ms(parsed - started),
                   **{f"{stage}_ms": ms for stage, ms in answered.stage_ms.items()},
                   "inference_ms": _ms(inferred - parsed), "postprocess_ms": _ms(finished - inferred),
                   "returned": received + (finished - started)}
        logger.info("batch timings %s", json.dumps(timings))
        self.metrics_channel.batch(timings, [reply for reply, _ in answered.replies],
                                   self.engine.device if self.engine else None)
        return sent

    def preprocess(self, data: list[dict[str, Any]]) -> list[Pending]:
        """Each body parsed into a request, or answered at once with the 4xx that says what is wrong, with
        the form of its reply. An image reply's format is the request's format."""
        pending: list[Pending] = []
        for index, row in enumerate(data):
            headers = _headers(self.context, index)
            body, content_type = _body_and_content_type(headers, row)
            try:
                request = parse_request(body, content_type)
                accept = headers.get("accept")
                fmt = reply_format(accept if isinstance(accept, str) else None, request)
            except RequestError as exc:
                pending.append(Pending(Reply(exc.status, exc.to_body())))
                continue
            if fmt is not None and fmt != request.output_format:
                request = request.model_copy(update={"output_format": fmt})
            pending.append(Pending(request, fmt))
        return pending

    def inference(self, pending: list[Pending], *args, **kwargs) -> Answered:
        """The engine's reply for every parsed request; replies already made pass through in place.
        Without a model every request gets the same 503, so no reply suggests the server could work."""
        if self.engine is None:
            message = f"the model failed to load and cannot serve requests: {self.load_error}"
            return Answered([(error_reply(503, "ModelLoadFailed", message), None) for _ in pending], {})
        requests = [each.item for each in pending if isinstance(each.item, GenerationRequest)]
        if not requests:
            return Answered([(each.item, each.image_format) for each in pending], {})
        result = self.engine.serve(requests)
        self._report_stage_times(result.stage_ms, len(requests))
        served = iter(result.replies)  # in the order of ``requests``
        return Answered([(next(served) if isinstance(each.item, GenerationRequest) else each.item, each.image_format)
                         for each in pending], result.stage_ms)

    def postprocess(self, answered: Answered) -> list[bytes]:
        """Each reply as its caller asked: the image itself for a 200 that asked for one (its seed and
        size in headers, as the JSON would have said them), JSON otherwise. Errors are always JSON."""
        sent = []
        for index, (reply, fmt) in enumerate(answered.replies):
            self.context.set_response_status(reply.status, HTTPStatus(reply.status).phrase, index)
            if reply.status == 200 and fmt is not None:
                sent.append(self._image_reply(index, reply))
            else:
                self.context.set_response_content_type(index, JSON)
                sent.append(reply.to_json())
        return sent

    def _image_reply(self, index: int, reply: Reply) -> bytes:
        self.context.set_response_content_type(index, IMAGE_TYPES[reply.body["format"]])
        for header, field in IMAGE_HEADERS.items():
            self.context.set_response_header(index, header, str(reply.body[field]))
        return reply.files[0]

    def _report_stage_times(self, stage_ms: dict[str, float], requests: int) -> None:
        for stage, milliseconds in stage_ms.items():
            self.context.metrics.add_time(f"{stage.capitalize()}Time", milliseconds, None, "ms")
        logger.info("batch of %d request(s): %s", requests,
                    ", ".join(f"{stage} {milliseconds:.1f} ms" for stage, milliseconds in stage_ms.items()))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def process_start_time() -> float | None:
    """When this worker process started (epoch seconds): the gap to ``initialize`` is Python imports.

    On Linux, from the kernel's start tick against the boot clock (10 ms steps). psutil's ``create_time``
    adds the boot time in whole seconds, so it was up to a second early (0.85 s on our 2-core machine: a
    negative "frontend to worker" phase and that much too much "python imports"); it stays for macOS.
    """
    try:
        with open("/proc/self/stat") as stat:
            started_tick = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_tick / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, no CLOCK_BOOTTIME: not Linux
        pass
    try:
        import psutil  # a TorchServe dependency

        return psutil.Process().create_time()
    except (ImportError, OSError):
        return None


def _headers(context, index: int) -> dict[str, Any]:
    """A request's headers by lower-case name (HTTP names are case-insensitive; TorchServe keeps the case)."""
    return {str(k).lower(): v for k, v in (context.get_all_request_header(index) or {}).items()}


def _body_and_content_type(headers: dict[str, Any], row: dict[str, Any]) -> tuple[Any, str | None]:
    """The raw body TorchServe received and its media type.

    A raw body arrives as parameter ``body``. Form posts (``curl -d`` without a JSON Content-Type) arrive
    as form fields instead; returning their content type lets the parser answer 415 with the fix.
    """
    request_type = headers.get("content-type")
    if "body" not in row:
        return b"", request_type if isinstance(request_type, str) else None
    parameter = headers.get("body")
    param_type = parameter.get("content-type") if isinstance(parameter, dict) else None
    content_type = request_type if isinstance(request_type, str) else param_type
    return row["body"], content_type
