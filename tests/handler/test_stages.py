"""The stages' machinery (handler/stages.py): out of memory splits a call in halves down to the request that
cannot fit alone, any other error answers its own call's jobs, and each stage is timed."""

from __future__ import annotations

import pytest
import torch

from handler.jobs import Job
from handler.schema import GenerationRequest
from handler.stages import OUT_OF_MEMORY_MESSAGE, attempts, timed

CPU = torch.device("cpu")


def jobs_of(*images: int) -> list[Job]:
    return [Job(GenerationRequest(prompt=f"prompt {i}", num_images=n), i) for i, n in enumerate(images)]


def run(groups, stage, what="generation") -> list[list[int]]:
    """Run ``stage`` over ``groups`` as the engine does; returns each call's jobs (by seed)."""
    calls = []
    for attempt in attempts(groups, what, CPU):
        with attempt:
            calls.append([job.seed for job in attempt.jobs])
            stage(attempt.jobs)
    return calls


def out_of_memory_above(limit: int, error: Exception | None = None):
    def stage(jobs):
        if sum(job.request.num_images for job in jobs) > limit:
            raise error or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return stage


def test_out_of_memory_splits_in_halves_down_to_the_request_that_cannot_fit_alone():
    jobs = jobs_of(1, 1, 1, 4)
    assert run([jobs], out_of_memory_above(3)) == [[0, 1, 2, 3], [0, 1], [2, 3], [2], [3]]
    assert [job.open for job in jobs] == [True, True, True, False]
    assert jobs[3].reply.status == 507 and jobs[3].reply.body["message"] == OUT_OF_MEMORY_MESSAGE


def test_mps_out_of_memory_splits_the_same_way():
    jobs = jobs_of(1, 2)
    run([jobs], out_of_memory_above(1, RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")))
    assert [job.open for job in jobs] == [True, False]


def test_any_other_error_answers_500_to_its_call_only():
    first, second = jobs_of(1, 1), jobs_of(1)

    def stage(jobs):
        if jobs[0] is first[0]:
            raise ValueError("secret path /x")

    assert run([first, second], stage) == [[0, 1], [0]]
    assert [job.reply.status for job in first] == [500, 500] and second[0].open
    assert first[0].reply.body["message"] == "image generation failed; see server logs"


def test_answered_jobs_are_not_tried_again():
    jobs = jobs_of(1, 1, 1)
    jobs[1].fail(500, "InternalServerError", "failed earlier")
    assert run([jobs], lambda _: None, "decoding") == [[0, 2]]
    assert run([jobs[1:2]], lambda _: None, "decoding") == []


def test_interrupts_are_not_answered_as_errors():
    with pytest.raises(KeyboardInterrupt):
        run([jobs_of(1)], lambda _: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_a_stage_is_timed_under_its_name():
    stage_ms = {}
    with timed(stage_ms, "decode", CPU):
        sum(range(100_000))
    assert list(stage_ms) == ["decode"] and stage_ms["decode"] > 0
