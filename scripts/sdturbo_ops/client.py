"""Asking sdturbo-serve for images: the request body, a running server's reply, and the files it becomes.

A reply is the JSON one (base64 images, the default) or, when the request's Accept header asked for it, the
image itself (:class:`ImageReply`); which one came back is read from the bytes, so a saved or S3 output
of either kind is handled the same way.

Failures are exceptions a CLI maps to its exit codes: :class:`BadUsage` (the request or the output name
cannot work, found before anything is sent), :class:`ServiceError` (the service answered with an error),
:class:`Timeout`, :class:`BadReply` (something came back that is not a reply of this service).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The fields a caller may set besides the prompt and the image; None means "the server's default".
REQUEST_FIELDS = ("seed", "num_inference_steps", "guidance_scale", "negative_prompt", "width", "height", "num_images",
                  "output_format", "strength", "metadata")
# File name endings per output format; the first is what a corrected name gets.
SUFFIXES = {"png": (".png",), "jpeg": (".jpg", ".jpeg"), "webp": (".webp",)}
FORMAT_OF_SUFFIX = {suffix: fmt for fmt, suffixes in SUFFIXES.items() for suffix in suffixes}
# The first bytes of each format's files: an image reply carries no other mark once it is a file or an S3
# object (SageMaker keeps the body, not the headers).
MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8\xff",), "webp": (b"RIFF",)}
# How each reply form is asked for: the Accept header, with the image's format filled in.
ACCEPT = {"json": "application/json", "image": "image/{fmt}"}


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


@dataclass(frozen=True)
class ImageReply:
    """A reply that is the image itself: its bytes, their format, and the seed when a header said it."""

    data: bytes
    format: str
    seed: int | None = None


def accept_header(reply: str, fmt: str | None, num_images: int | None) -> str:
    """The Accept header for ``reply`` (``json`` or ``image``) in format ``fmt`` (None: PNG, the server's).

    Raises:
        BadUsage: the image itself was asked for several images (the server would answer 406).
    """
    if reply == "image" and (num_images or 1) > 1:
        raise BadUsage(f"--accept image returns one image and --num-images is {num_images}: use --accept json "
                       "(the default) for several")
    return ACCEPT[reply].format(fmt=fmt or "png")


def image_format(data: bytes) -> str | None:
    """The format of an image file's bytes (png, jpeg, webp), or None when they are no such image."""
    for fmt, magics in MAGIC.items():
        if data.startswith(magics) and (fmt != "webp" or data[8:12] == b"WEBP"):
            return fmt
    return None


def read_reply(payload: bytes, source: str, seed: str | None = None) -> dict | ImageReply:
    """A reply from its bytes: the image itself, or the parsed JSON (a reply, or an error to report).

    Raises:
        BadReply: neither an image nor JSON.
    """
    fmt = image_format(payload)
    if fmt is not None:
        return ImageReply(payload, fmt, int(seed) if seed and seed.isdigit() else None)
    try:
        return json.loads(payload)
    except ValueError:
        raise BadReply(f"{source} is neither an image nor JSON: {payload[:200]!r}") from None


def seed_of(reply: object) -> int | None:
    """The seed a reply states, if any (an image reply from S3 has lost the header that carried it)."""
    if isinstance(reply, ImageReply):
        return reply.seed
    return reply.get("seed") if isinstance(reply, dict) else None


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
        from handler.parse import RequestError, parse_request
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


def files_of(reply: object, source: str) -> tuple[list[bytes], str | None]:
    """The image files of a reply, and their format: an image reply's bytes as they are, a JSON reply's
    images decoded from base64.

    Raises:
        ServiceError, BadReply: as ``images_of``, or an image that is not valid base64.
    """
    if isinstance(reply, ImageReply):
        return [reply.data], reply.format
    files = []
    for index, data in enumerate(images_of(reply, source)):
        try:
            files.append(base64.b64decode(data, validate=True))
        except ValueError as exc:
            raise BadReply(f"image {index} is not valid base64: {exc}") from None
    return files, reply.get("format")


def write_images(reply: object, out: Path, source: str = "the reply") -> tuple[list[Path], str]:
    """Write a reply's images into ``out`` and numbered siblings (cat.png, cat-1.png, ...).

    The reply says its format; a name ending in another format's suffix is corrected rather than filled
    with the wrong bytes. Returns the paths and a note saying so ("" when the name was kept).
    """
    files, fmt = files_of(reply, source)
    note = ""
    named = FORMAT_OF_SUFFIX.get(out.suffix.lower())
    if fmt in SUFFIXES and named is not None and named != fmt:
        corrected = out.with_suffix(SUFFIXES[fmt][0])
        note = f"the reply is {fmt.upper()}, so {out} became {corrected}"
        out = corrected
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(files):
        path = out if index == 0 else out.with_name(f"{out.stem}-{index}{out.suffix}")
        path.write_bytes(data)
        paths.append(path)
    return paths, note


def post_local(url: str, body: dict, timeout: float, accept: str = ACCEPT["json"]) -> dict | ImageReply:
    """POST a request to a running TorchServe; returns its reply, JSON or (as ``accept`` asked) the image."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload, seed = response.read(), response.headers.get("X-Seed")
    except urllib.error.HTTPError as err:
        raise ServiceError(describe_error(err.code, err.read())) from None
    except TimeoutError:
        raise Timeout(f"no reply from {url} within {timeout:.0f}s") from None
    except urllib.error.URLError as err:
        raise ServiceError(f"cannot reach {url}: {err.reason} (is TorchServe running? `make serve`)") from None
    return read_reply(payload, "the reply", seed)
