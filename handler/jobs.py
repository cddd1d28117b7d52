"""A batch as a value: one ``Job`` per request, carried through the engine's stages (handler/engine.py).

A job holds everything that belongs to its request on the way from parsed request to reply: the resolved
seed, its latents, its images as handed to the image encoder, their files and, once known, its ``Reply``.
A stage works on the jobs that are still open and answers the ones it fails, so an error stays with the
request that caused it and the stages after it simply skip that job.

The TorchServe adapter's hooks hand each other a batch as values too: ``Pending`` requests, then
``Answered`` replies (handler/torchserve_handler.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from handler.encode import Claim
    from handler.schema import GenerationRequest


class Base64Text(str):
    """Base64 text as the engine made it: only A-Z, a-z, 0-9, "+", "/" and "=", so it stands in JSON
    between quotes as it is."""


@dataclass(frozen=True)
class Reply:
    """What one caller gets back: an HTTP status and a JSON body; a 200 also keeps its image files, so the
    caller can send the image itself instead of the JSON (handler/negotiate.py)."""

    status: int
    body: dict[str, Any]
    files: tuple[bytes, ...] = field(default=(), repr=False, compare=False)  # each image's PNG/JPEG/WebP bytes

    def to_json(self) -> bytes:
        """The body as compact JSON (what json.dumps writes), joined once: its images, megabytes of base64,
        go in as they are, where json.dumps would check every character for escapes and copy it twice
        more (3 ms against 1 ms for a 512x512 noise PNG on the development machine's CPU)."""
        parts = [b"{"]
        for index, (key, value) in enumerate(self.body.items()):
            parts += [b"," if index else b"", json.dumps(key).encode(), b":", *_json_parts(value)]
        return b"".join([*parts, b"}"])


def _json_parts(value: Any) -> list[bytes]:
    """``value`` as JSON, in pieces: base64 text (and lists of it) between quotes as it is."""
    if isinstance(value, Base64Text):
        return [b'"', value.encode("ascii"), b'"']
    if isinstance(value, list) and value and all(isinstance(item, Base64Text) for item in value):
        pieces = [b"["]
        for index, item in enumerate(value):
            pieces += [b"," if index else b"", *_json_parts(item)]
        return [*pieces, b"]"]
    return [json.dumps(value, separators=(",", ":")).encode()]


def error_reply(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"code": status, "type": kind, "message": message})


@dataclass(eq=False)
class Job:
    """One request's way through a batch; each stage fills in the next field or the reply."""

    request: GenerationRequest
    seed: int
    latents: torch.Tensor | None = None  # generate: (num_images, C, h, w) on the device
    # decode: each image's pixels, handed to the image encoder as soon as they reached the host
    claims: list[Claim] = field(default_factory=list)
    files: list[bytes] = field(default_factory=list)  # encode: each image's PNG/JPEG/WebP bytes
    reply: Reply | None = None

    @property
    def open(self) -> bool:
        """Still waiting for its reply (no stage has answered it yet)."""
        return self.reply is None

    def fail(self, status: int, kind: str, message: str) -> None:
        self.reply = error_reply(status, kind, message)
        self.latents, self.claims = None, []


@dataclass
class BatchResult:
    """The jobs of one batch, each with its reply, and how long each stage took."""

    jobs: list[Job]
    stage_ms: dict[str, float]

    @property
    def replies(self) -> list[Reply]:
        return [job.reply for job in self.jobs]


@dataclass(frozen=True)
class Pending:
    """One request of a TorchServe batch, as the adapter's preprocess hands it on: parsed, or already
    answered (a 4xx), with the form its reply takes."""

    item: GenerationRequest | Reply
    image_format: str | None = None  # the reply is the image file itself, in this format; None: JSON


@dataclass(frozen=True)
class Answered:
    """What the adapter's inference hands postprocess: every request's reply with its form, in batch order,
    and the engine's stage times (none when no request reached the engine), for handle's timings line."""

    replies: list[tuple[Reply, str | None]]
    stage_ms: dict[str, float]
