"""The request schema and its parser: bytes (or an already-decoded JSON value) in, a typed request out.

Every limit sits here with the reason for its value, in the field's description: the JSON Schema that
clients get and the README's request table are both made from them.
Parsing is a pure function with no model or server state, so it is unit- and fuzz-tested directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The bounds of each field; the reason for each is in the field's description below.
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 4, 1
DEFAULT_GUIDANCE, MAX_GUIDANCE = 0.0, 10.0
MIN_SIDE, MAX_SIDE, DEFAULT_SIDE, SIDE_MULTIPLE = 256, 1024, 512, 8
MAX_IMAGES = 4
MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1
# A whole request body is a few hundred bytes; anything this large is not a valid request.
MAX_BODY_BYTES = 64 * 1024

OutputFormat = Literal["png", "jpeg", "webp"]
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)]


class GenerationRequest(BaseModel):
    """One text-to-image request, as a caller sends it. Each field's description says why its bounds are
    what they are; ``request_table()`` turns them into the README's table."""

    # strict: "512" is not 512 and true is not 1; allow_inf_nan: NaN/Infinity are rejected.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    prompt: Annotated[str, Field(
        min_length=1, max_length=MAX_PROMPT_CHARS,
        description="What to draw. CLIP reads 77 tokens (about 300 characters of English) and truncates the "
                    "rest, so 1000 characters is generous while bounding tokenizer work and log sizes.")]
    seed: Annotated[int | None, Field(
        ge=0, le=MAX_SEED,
        description="Noise seed; drawn at random when absent and returned in the reply. 32 bits: what "
                    "torch.Generator and most UIs accept.")] = None
    num_inference_steps: Annotated[int, Field(
        ge=MIN_STEPS, le=MAX_STEPS,
        description="Denoising steps. Turbo models are distilled for 1-4 steps; more do not improve them "
                    "and cost linearly.")] = DEFAULT_STEPS
    guidance_scale: Annotated[float, Field(
        ge=0.0, le=MAX_GUIDANCE,
        description="Classifier-free guidance. SD-turbo was trained without it (0.0, the model card's "
                    "value); above 1 doubles the UNet work, and 10 is far past anything useful.")] = DEFAULT_GUIDANCE
    width: Annotated[Side, Field(
        description="Image width in pixels: multiples of 8 (one latent pixel is 8x8 pixels); 256-1024 keeps "
                    "the latent grid within what the UNet handles and bounds decoder memory.")] = DEFAULT_SIDE
    height: Annotated[Side, Field(description="Image height in pixels; bounds as for width.")] = DEFAULT_SIDE
    num_images: Annotated[int, Field(
        ge=1, le=MAX_IMAGES,
        description="Images for this prompt, each with its own noise; bounds one caller's share of a batch "
                    "and the reply size.")] = 1
    output_format: Annotated[OutputFormat, Field(
        description="Encoding of the returned images (base64 in the JSON reply).")] = "png"

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must contain non-whitespace text")
        return prompt

    def shape_key(self) -> tuple[int, int, int, float]:
        """Requests with equal keys can share one pipeline call."""
        return (self.width, self.height, self.num_inference_steps, self.guidance_scale)


def request_json_schema() -> dict[str, Any]:
    """The request body's JSON Schema (draft 2020-12), bounds and reasons included, for clients."""
    return GenerationRequest.model_json_schema()


def request_table() -> str:
    """The README's request table, made from the schema: field, type, default, bounds, why."""
    rows = ["| field | type | default | bounds | why |", "|---|---|---|---|---|"]
    schema = request_json_schema()
    for name, spec in schema["properties"].items():
        spec = next((part for part in spec.get("anyOf", []) if part.get("type") != "null"), spec) | {
            key: spec[key] for key in ("default", "description") if key in spec}
        kind = " \\| ".join(f"`{value}`" for value in spec["enum"]) if "enum" in spec else spec["type"]
        default = "required" if name in schema.get("required", ()) else (
            "random, returned" if spec.get("default") is None else f"`{spec['default']}`")
        rows.append(f"| `{name}` | {kind} | {default} | {_bounds(spec)} | {spec['description']} |")
    return "\n".join(rows) + "\n"


def _bounds(spec: dict[str, Any]) -> str:
    low, high = spec.get("minimum", spec.get("minLength")), spec.get("maximum", spec.get("maxLength"))
    if low is None and high is None:
        return ""
    text = f"{low}–{high}" + (" characters" if "maxLength" in spec else "")
    return text + (f", multiple of {spec['multipleOf']}" if "multipleOf" in spec else "")


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


def parse_request(body: Any, content_type: str | None = None) -> GenerationRequest:
    """Validate one request body.

    Args:
        body: raw bytes/str as received, or a JSON value TorchServe already decoded.
        content_type: the request's Content-Type header, parameters allowed (``; charset=utf-8``).

    Returns:
        The validated request; ``seed`` stays None when the caller sent none.

    Raises:
        RequestError: 415 for a non-JSON media type, 413 for an oversize body, 400 otherwise.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_COMPATIBLE_TYPES and not media_type.endswith("+json"):
        raise RequestError(
            415,
            f"unsupported content type {media_type[:_MAX_FIELD_NAME]!r}: send a JSON object "
            "with Content-Type: application/json",
            [{"field": "Content-Type", "message": "expected application/json"}],
        )
    try:
        if isinstance(body, (bytes, bytearray, memoryview, str)):
            raw = body.encode() if isinstance(body, str) else bytes(body)
            if len(raw) > MAX_BODY_BYTES:
                raise RequestError(413, f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
            if not raw.strip():
                raise RequestError(400, "request body is empty: send a JSON object with a 'prompt'",
                                   [{"field": "body", "message": "empty"}])
            return GenerationRequest.model_validate_json(raw)
        if isinstance(body, Mapping):
            return GenerationRequest.model_validate(dict(body))
        raise RequestError(400, "request body must be a JSON object with a 'prompt'",
                           [{"field": "body", "message": f"got JSON {type(body).__name__}"}])
    except ValidationError as exc:
        raise _to_request_error(exc) from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply",
                           [{"field": "body", "message": "too deep"}]) from None


def _to_request_error(exc: ValidationError) -> RequestError:
    errors = []
    for err in exc.errors(include_input=False, include_url=False)[:_MAX_REPORTED_ERRORS]:
        field = ".".join(str(part) for part in err["loc"])[:_MAX_FIELD_NAME] or "body"
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field (allowed: " + ", ".join(GenerationRequest.model_fields) + ")"
        elif kind in ("json_invalid", "json_type") or field == "body":
            field, message = "body", "not valid JSON: " + err["msg"].removeprefix("Invalid JSON: ")
        elif kind == "model_type" or kind == "model_attributes_type":
            field, message = "body", "must be a JSON object"
        else:
            message = err["msg"]
        errors.append({"field": field, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return RequestError(400, f"invalid request: {summary}", errors)
