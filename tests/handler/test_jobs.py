"""A batch as a value (handler/jobs.py): a job answered by a stage drops what it held, and replies come in
request order as compact JSON."""

from __future__ import annotations

import json

import pytest
import torch

from handler.jobs import Base64Text, BatchResult, Job, Reply, error_reply
from handler.schema import GenerationRequest


def job(seed: int = 1) -> Job:
    return Job(GenerationRequest(prompt="a cat"), seed)


def test_a_failed_job_is_answered_and_drops_what_it_held():
    failing = job()
    failing.latents, failing.claims = torch.zeros(1, 4, 8, 8), [lambda: b"png"]
    assert failing.open
    failing.fail(507, "OutOfMemory", "too big")
    assert not failing.open and failing.latents is None and failing.claims == []
    assert failing.reply == error_reply(507, "OutOfMemory", "too big")


def test_an_error_reply_says_its_status_kind_and_message():
    reply = error_reply(400, "InvalidRequest", "width: too large")
    assert reply.status == 400
    assert json.loads(reply.to_json()) == {"code": 400, "type": "InvalidRequest", "message": "width: too large"}


def test_a_reply_is_compact_json():
    assert Reply(200, {"seed": 5, "format": "png"}).to_json() == b'{"seed":5,"format":"png"}'


def test_a_batch_result_gives_the_replies_in_request_order():
    jobs = [job(1), job(2)]
    jobs[1].reply = Reply(200, {"seed": 2})
    jobs[0].fail(500, "InternalServerError", "failed")
    result = BatchResult(jobs, {"generate": 1.0})
    assert [reply.status for reply in result.replies] == [500, 200]


@pytest.mark.parametrize("body", [
    {"image": Base64Text("aGVsbG8="), "seed": 7, "width": 512, "height": 512, "format": "png"},
    {"image": Base64Text("QQ=="), "seed": 1, "format": "webp", "images": [Base64Text("QQ=="), Base64Text("Qg==")]},
    {"code": 422, "type": "ValidationError", "message": 'a "quoted" message\\n with ünïcode'},
    {"images": [], "note": ["plain", "strings"]},
    {},
])
def test_a_reply_is_the_json_that_json_dumps_writes(body):
    """to_json puts base64 in as it is, for speed; the bytes must be exactly json.dumps's."""
    assert Reply(200, body).to_json() == json.dumps(body, separators=(",", ":")).encode()
