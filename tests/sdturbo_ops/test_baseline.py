"""The benchmark's baseline (sdturbo_ops/baseline.py): the seed's FastAPI app, one PNG per prompt, the same
image for the same seed. Its routes are called in process (the benchmark's baseline stage serves it)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sdturbo_ops.baseline import Prompt, build_app


@pytest.fixture(scope="module")
def routes(tiny_sd_dir):
    app = build_app(str(tiny_sd_dir))
    return {route.path: route.endpoint for route in app.routes if hasattr(route, "endpoint")}


def test_health_answers_ok(routes):
    assert routes["/health"]() == {"status": "ok"}


@pytest.mark.slow
def test_a_prompt_gets_a_png_and_its_seed_reproduces_it(routes):
    first = routes["/generate"](Prompt(prompt="a cat", seed=3))["image"]
    assert Image.open(io.BytesIO(base64.b64decode(first))).format == "PNG"
    assert routes["/generate"](Prompt(prompt="a cat", seed=3))["image"] == first
    assert routes["/generate"](Prompt(prompt="a cat", seed=4))["image"] != first
