"""Asking sdturbo-serve for images: the request body, a running server's reply, and the files it becomes.

Failures are exceptions a CLI maps to its exit codes: :class:`BadUsage` (the request or the output name
cannot work, found before anything is sent), :class:`ServiceError` (the service answered with an error),
:class:`Timeout`, :class:`BadReply` (something came back that is not a reply of this service).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

# The fields a caller may set besides the prompt and the image; None means "the server's default".
REQUEST_FIELDS = ("seed", "num_inference_steps", "guidance_scale", "width", "height", "num_images", "output_format",
                  "strength")
# File name endings per output format; the first is what a corrected name gets.
SUFFIXES = {"png": (".png",), "jpeg": (".jpg", ".jpeg"), "webp": (".webp",)}
FORMAT_OF_SUFFIX = {suffix: fmt for fmt, suffixes in SUFFIXES.items() for suffix in suffixes}


class ClientError(Exception):
    """Base of the failures below: the message is one line for the user."""


class BadUsage(ClientError):
    pass


class ServiceError(ClientError):
    pass


class Timeout(ClientError):
    pass


class BadReply(ClientError):
    pass


def output_and_format(out: Path | None, fmt: str | None) -> tuple[Path, str | None]:
    """The file to write and the format to ask for, agreeing with each other.

    ``--format`` wins; without it a ``.jpg``/``.webp`` name asks for that format. A name whose ending
    says another format than ``--format``, or a format the service cannot write (``.gif``), is refused
    rather than filled with the wrong bytes.
    """
    if out is None:
        return Path(f"image{SUFFIXES[fmt or 'png'][0]}"), fmt
    named = FORMAT_OF_SUFFIX.get(out.suffix.lower())
    if out.suffix and named is None:
        endings = ", ".join(sorted(FORMAT_OF_SUFFIX))
        raise BadUsage(f"--out {out}: the service writes PNG, JPEG or WebP, and {out.suffix} names none of them "
                       f"(use one of {endings})")
    if fmt is not None and named is not None and named != fmt:
        raise BadUsage(f"--out {out} names a {named.upper()} file but --format {fmt} asks for {fmt.upper()}: "
                       f"use --out {out.with_suffix(SUFFIXES[fmt][0])}, or leave --format out")
    return out, fmt or (named if named != "png" else None)


def request_body(prompt: str, options: dict, image: Path | None) -> dict:
    """The JSON request: the prompt plus only the fields the caller set (the server owns the defaults)."""
    body: dict = {"prompt": prompt}
    body.update({name: options[name] for name in REQUEST_FIELDS if options.get(name) is not None})
    if image is not None:
        try:
            body["image"] = base64.b64encode(image.read_bytes()).decode("ascii")
        except OSError as exc:
            raise BadUsage(f"cannot read --image {image}: {exc.strerror or exc}") from None
    return body


def validate(body: dict) -> None:
    """Check the request with the schema the handler itself applies (handler/schema.py), so a request the
    endpoint would refuse is refused here, before it costs an upload or starts an instance."""
    try:
        from handler.schema import RequestError, parse_request
    except ImportError as exc:
        raise BadUsage(f"cannot check the request: the project is not installed ({exc}); run `make install` "
                       "and use .venv/bin/python") from None
    try:
        parse_request(json.dumps(body).encode(), "application/json")
    except RequestError as exc:
        raise BadUsage(f"the endpoint would refuse this request with {exc.status}: {exc.message}") from None


def describe_error(status: int | str, payload: bytes | str) -> str:
    """One readable line from a JSON error body (ours or TorchServe's), or the raw text."""
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status}: {text.strip()[:500]}"
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or json.dumps(body)
        kind = body.get("type")
        return f"{status} {kind}: {message}" if kind else f"{status}: {message}"
    return f"{status}: {text[:500]}"


def images_of(reply: object, source: str) -> list[str]:
    """The base64 images of a reply.

    Raises:
        ServiceError: ``reply`` is the service's error reply (its message is kept).
        BadReply: ``reply`` is no reply of this service at all.
    """
    if isinstance(reply, dict):
        images = reply.get("images") or ([reply["image"]] if "image" in reply else [])
        if images:
            return images
        if "message" in reply or "code" in reply:
            raise ServiceError(describe_error(reply.get("code", "error"), json.dumps(reply)))
    raise BadReply(f"{source} is not a reply of sdturbo-serve (no image, images or error message): "
                   f"{json.dumps(reply)[:200]}")


def write_images(reply: object, out: Path, source: str = "the reply") -> tuple[list[Path], str]:
    """Decode a reply's images into ``out`` and numbered siblings (cat.png, cat-1.png, ...).

    The reply says its format; a name ending in another format's suffix is corrected rather than filled
    with the wrong bytes. Returns the paths and a note saying so ("" when the name was kept).
    """
    images = images_of(reply, source)
    note = ""
    fmt = reply.get("format") if isinstance(reply, dict) else None
    named = FORMAT_OF_SUFFIX.get(out.suffix.lower())
    if fmt in SUFFIXES and named is not None and named != fmt:
        corrected = out.with_suffix(SUFFIXES[fmt][0])
        note = f"the reply is {fmt.upper()}, so {out} became {corrected}"
        out = corrected
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(images):
        path = out if index == 0 else out.with_name(f"{out.stem}-{index}{out.suffix}")
        try:
            path.write_bytes(base64.b64decode(data, validate=True))
        except ValueError as exc:
            raise BadReply(f"image {index} is not valid base64: {exc}") from None
        paths.append(path)
    return paths, note


def post_local(url: str, body: dict, timeout: float) -> dict:
    """POST a request to a running TorchServe; returns its JSON reply."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as err:
        raise ServiceError(describe_error(err.code, err.read())) from None
    except TimeoutError:
        raise Timeout(f"no reply from {url} within {timeout:.0f}s") from None
    except urllib.error.URLError as err:
        raise ServiceError(f"cannot reach {url}: {err.reason} (is TorchServe running? `make serve`)") from None
    try:
        return json.loads(payload)
    except ValueError:
        raise BadReply(f"the reply is not JSON: {payload[:200]!r}") from None
