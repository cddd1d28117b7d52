"""A request body in, a typed request out (handler/schema.py), or a RequestError: the 4xx that names the
field and says what to send instead.

A pure function with no model or server state, so it is unit- and fuzz-tested directly
(tests/handler/test_parse.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from handler.image_input import ImageError
from handler.schema import IGNORED_FIELD, MAX_BODY_BYTES, MAX_IMAGE_BODY_BYTES, GenerationRequest


class RequestError(Exception):
    """A caller's mistake: carries the HTTP status and a JSON-ready body that names the field."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.status, "type": "InvalidRequest", "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


# Media types whose body may be JSON. SageMaker forwards the caller's ContentType verbatim and
# invoke_endpoint_async defaults to application/octet-stream, so raw bytes are accepted as JSON too.
_JSON_COMPATIBLE_TYPES = {"", "application/json", "application/octet-stream", "text/plain", "text/json"}
_MAX_REPORTED_ERRORS = 10
_MAX_FIELD_NAME = 64


def is_json_compatible(media_type: str) -> bool:
    """Whether a body of this media type (lower case, no parameters) may be JSON: the request's Content-Type,
    and what a reply's Accept may name for the JSON reply (handler/negotiate.py)."""
    return media_type in _JSON_COMPATIBLE_TYPES or media_type.endswith("+json")


def parse_request(body: Any, content_type: str | None = None) -> GenerationRequest:
    """Validate one request body.

    Args:
        body: raw bytes/str as received, or a JSON value TorchServe already decoded.
        content_type: the request's Content-Type header, parameters allowed (``; charset=utf-8``).

    Returns:
        The validated request; ``seed`` stays None when the caller sent none.

    Raises:
        RequestError: 415 for a non-JSON media type, 413 for an oversize body or image, 422 for a field the
            request's other settings would ignore (negative_prompt without guidance), 400 otherwise.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not is_json_compatible(media_type):
        raise RequestError(415, f"unsupported content type {media_type[:_MAX_FIELD_NAME]!r}: send a JSON object "
                                "with Content-Type: application/json",
                           [{"field": "Content-Type", "message": "expected application/json"}])
    try:
        if isinstance(body, (bytes, bytearray, memoryview, str)):
            raw = body.encode() if isinstance(body, str) else bytes(body)
            if len(raw) > MAX_IMAGE_BODY_BYTES or (len(raw) > MAX_BODY_BYTES and not _carries_image(raw)):
                raise RequestError(
                    413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} without an image "
                         f"and {MAX_IMAGE_BODY_BYTES} with one", [{"field": "body", "message": "too large"}])
            if not raw.strip():
                raise RequestError(400, "request body is empty: send a JSON object with a 'prompt'",
                                   [{"field": "body", "message": "empty"}])
            return GenerationRequest.model_validate_json(raw).resolved()
        if isinstance(body, Mapping):
            return GenerationRequest.model_validate(dict(body)).resolved()
        raise RequestError(400, "request body must be a JSON object with a 'prompt'",
                           [{"field": "body", "message": f"got JSON {type(body).__name__}"}])
    except ValidationError as exc:
        raise _to_request_error(exc) from None
    except ImageError as exc:
        raise RequestError(exc.status, f"invalid request: image: {exc.message}",
                           [{"field": "image", "message": exc.message}]) from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply",
                           [{"field": "body", "message": "too deep"}]) from None


def _carries_image(raw: bytes) -> bool:
    """Whether a body over the 64 KiB JSON limit is an object with an ``image`` string (then the larger
    limit applies). Parsed only for such bodies; anything unparsable is simply too large."""
    try:
        value = from_json(raw, cache_strings="keys")
    except ValueError:
        return False
    return isinstance(value, dict) and isinstance(value.get("image"), str)


def _to_request_error(exc: ValidationError) -> RequestError:
    errors = []
    for err in exc.errors(include_input=False, include_url=False)[:_MAX_REPORTED_ERRORS]:
        field = ".".join(str(part) for part in err["loc"])[:_MAX_FIELD_NAME] or "body"
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field (allowed: " + ", ".join(GenerationRequest.model_fields) + ")"
        elif kind in ("model_type", "model_attributes_type"):  # valid JSON, but an array, string, number...
            field, message = "body", "must be a JSON object with a 'prompt'"
        elif kind in ("json_invalid", "json_type") or field == "body":
            field, message = "body", "not valid JSON: " + err["msg"].removeprefix("Invalid JSON: ")
        else:
            message = err["msg"]
        errors.append({"field": field, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    ignored = all(err["type"] == IGNORED_FIELD for err in exc.errors())
    return RequestError(422 if ignored else 400, f"invalid request: {summary}", errors)
