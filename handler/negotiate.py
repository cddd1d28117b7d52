"""Which form a reply takes: JSON (the default) or the image itself, chosen from the request's Accept header.

``Accept: image/png`` (or ``image/jpeg``, ``image/webp``) asks for the image's bytes as the whole reply, so
``curl -o cat.png`` works and no base64 crosses the wire. The rules, in the README's "Requests and replies":

- no Accept, ``*/*``, ``application/*``, or a type a JSON body satisfies → JSON, as before;
- an image type, or ``image/*``, that beats JSON's quality (q) value → that image: its type picks the format
  when the body names no ``output_format``; ``image/*`` takes the body's ``output_format`` (PNG by default);
- ties go to JSON (the default), and an exact type outranks a wildcard of the same q (``image/png, */*`` is
  PNG), as RFC 9110 says the most specific range rules;
- nothing acceptable → 406 with what is possible: a type we cannot make (``image/gif``), an image type that
  contradicts the body's ``output_format``, or an image for ``num_images`` > 1 (one reply, one image).

A pure function of the header and the parsed request, so it is unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.parse import RequestError, is_json_compatible
from handler.schema import GenerationRequest

JSON = "application/json"
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
POSSIBLE = ", ".join([JSON, *IMAGE_TYPES.values()])
# Long headers are cut in error messages, as elsewhere in the schema's errors.
_MAX_QUOTED = 64


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: ``type/subtype`` (either may be ``*``) and its quality, 0..1."""

    type: str
    subtype: str
    q: float

    def specificity(self, media_type: str) -> int | None:
        """How exactly this range names ``media_type``: 2 exact, 1 ``type/*``, 0 ``*/*``; None if not at all."""
        kind, subtype = media_type.split("/", 1)
        if (self.type, self.subtype) == (kind, subtype):
            return 2
        if self.type == kind and self.subtype == "*":
            return 1
        return 0 if self.type == "*" else None


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an Accept header. Parameters other than q are ignored; a bare ``*`` (what Java's
    HttpURLConnection sends) is ``*/*``; an unreadable q counts as 1, the value a range has without one."""
    ranges = []
    for part in (header or "").split(","):
        media_type, *params = (piece.strip() for piece in part.split(";"))
        media_type = media_type.lower()
        if not media_type:
            continue
        kind, _, subtype = (media_type if "/" in media_type else "*/*").partition("/")
        ranges.append(MediaRange(kind, subtype or "*", _quality(params)))
    return ranges


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 1.0
    return 1.0


def preference(ranges: list[MediaRange], candidate: str) -> tuple[float, int]:
    """(q, specificity) of the most specific range naming ``candidate``; (0, -1) when none does.

    JSON is named by ``application/json`` and every other type a JSON body satisfies (``text/plain``,
    ``application/octet-stream``...: SageMaker forwards a caller's Accept as it is), and by ``application/*``.
    """
    best = (0.0, -1)
    for media_range in ranges:
        if candidate == JSON and media_range.type != "*" and media_range.subtype != "*":
            exact = is_json_compatible(f"{media_range.type}/{media_range.subtype}")
            specificity = 2 if exact else None
        else:
            specificity = media_range.specificity(candidate)
        if specificity is not None and specificity > best[1]:
            best = (media_range.q, specificity)
    return best


def reply_format(accept: str | None, request: GenerationRequest) -> str | None:
    """The image format to reply with (``png``, ``jpeg``, ``webp``), or None for the JSON reply.

    Raises:
        RequestError: 406 when the Accept header allows nothing this request can be answered with.
    """
    ranges = parse_accept(accept)
    if not ranges:
        return None
    candidates = {None: JSON, **{fmt: IMAGE_TYPES[fmt] for fmt in _image_formats(request)}}
    scores = {fmt: preference(ranges, media_type) for fmt, media_type in candidates.items()}
    # max keeps the first of equal scores: JSON, then the body's output_format, then the other formats.
    chosen = max(scores, key=lambda fmt: scores[fmt])
    if scores[chosen][0] > 0:
        return chosen
    raise _not_acceptable(accept, request, ranges)


def _image_formats(request: GenerationRequest) -> list[str]:
    """The formats an image reply to this request may have, the body's own first: none for several images
    (an image reply carries one), only ``output_format`` when the body names it."""
    if request.num_images > 1:
        return []
    if "output_format" in request.model_fields_set:
        return [request.output_format]
    return sorted(IMAGE_TYPES, key=lambda fmt: fmt != request.output_format)


def _not_acceptable(accept: str, request: GenerationRequest, ranges: list[MediaRange]) -> RequestError:
    """The 406 that says why: the image types the header asked for, set against the body."""
    asked = [fmt for fmt, media_type in IMAGE_TYPES.items() if preference(ranges, media_type)[0] > 0]
    quoted = accept[:_MAX_QUOTED]
    if asked and request.num_images > 1:
        message = (f"Accept {quoted!r} asks for the image itself, which is one image, and num_images is "
                   f"{request.num_images}: ask for {JSON} (every image, base64) or for one image")
    elif asked:
        message = (f"Accept {quoted!r} contradicts output_format {request.output_format!r}: leave output_format "
                   f"out (the Accept header then picks the format) or ask for {IMAGE_TYPES[request.output_format]}")
    else:
        message = f"cannot reply with Accept {quoted!r}: this endpoint replies with {POSSIBLE}"
    return RequestError(406, message, [{"field": "Accept", "message": f"acceptable: {POSSIBLE}"}])
