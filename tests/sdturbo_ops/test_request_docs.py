"""The request's docs made from its schema (sdturbo_ops/request_docs.py): the README's table, and invoke.py's
flags, whose help states each bound and default exactly as the schema has it."""

from __future__ import annotations

import importlib.util

import pytest

from handler.schema import DEFAULT_IMAGE_STEPS, DEFAULT_STEPS, MAX_STEPS, MIN_STEPS, GenerationRequest
from sdturbo_ops import request_docs
from tests.support.helpers import REPO, run_script


def test_the_readmes_request_table_is_the_schemas():
    result = run_script("request_docs.py", "--check")
    assert result.returncode == 0, result.stderr


def test_the_table_has_a_row_per_field_with_its_default_and_bounds():
    rows = request_docs.table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(GenerationRequest.model_fields)
    steps = next(row for row in rows if row.startswith("| `num_inference_steps`"))
    assert f"| `{DEFAULT_STEPS}`; `{DEFAULT_IMAGE_STEPS}` with an image | {MIN_STEPS}–{MAX_STEPS} |" in steps


@pytest.mark.parametrize("spec, words", [
    ({"minimum": 1, "maximum": 4}, "1–4"),
    ({"minLength": 1, "maxLength": 1000}, "1–1000 characters"),
    ({"exclusiveMinimum": 0.0, "maximum": 1.0}, "over 0.0, up to 1.0"),
    ({"minimum": 256, "maximum": 1024, "multipleOf": 8}, "256–1024, multiple of 8"),
    ({"maxLength": 10, "x-bounds": "base64 of ≤ 6 MiB"}, "base64 of ≤ 6 MiB"),
    ({"enum": ["png"]}, ""),
])
def test_bounds_in_words(spec, words):
    assert request_docs.bounds(spec) == words


def test_a_flags_help_is_its_fields_bounds_and_the_servers_default():
    assert request_docs.flag_help("num_inference_steps") == (
        f"{MIN_STEPS}–{MAX_STEPS} (server default: {DEFAULT_STEPS}; {DEFAULT_IMAGE_STEPS} with an image)")
    assert request_docs.flag_help("seed") == "0–4294967295 (server default: random, returned)"


def invoke_subcommands():
    spec = importlib.util.spec_from_file_location("invoke_cli", REPO / "scripts" / "invoke.py")
    invoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(invoke)
    commands = next(action for action in invoke.build_parser()._actions if action.dest == "command")
    return commands.choices


@pytest.mark.parametrize("subcommand", ["local", "async"])
def test_invoke_takes_each_request_fields_bounds_and_default_from_the_schema(subcommand):
    """A help text that restated a bound or a default by hand would be a second home for it (cog derives its
    CLI from ``Input(...)`` the same way)."""
    actions = {action.dest: action for action in invoke_subcommands()[subcommand]._actions}
    bounded = [name for name in GenerationRequest.model_fields if name not in ("prompt", "image")]
    assert set(bounded) <= set(actions), "a request field without its flag"
    for name in bounded:
        if name == "output_format":
            assert actions[name].choices == request_docs.choices(name) == ("png", "jpeg", "webp")
        else:
            assert actions[name].help.endswith(request_docs.flag_help(name)), name
