"""Engines for the tests: the tiny offline model on the CPU, requests for it, and stand-ins that watch or
replace what the engine calls (the pipeline, CUDA graph capture)."""

from __future__ import annotations

from handler.engine import Engine
from handler.parse import parse_request
from handler.settings import load_settings
from tests.support.images import IMAGE


def make_engine(model_dir, **settings) -> Engine:
    values = {"model_dir": model_dir.name, "device": "cpu", "warmup": False, **settings}
    return Engine.load(model_dir.parent, load_settings(values, {}))


def req(**fields):
    return parse_request({"prompt": "a cat", **fields})



def image_req(**fields):
    """An image-to-image request (320x256 colour ramps unless ``image`` is given)."""
    return req(**{"image": IMAGE, **fields})


class PipelineSpy:
    """Counts pipeline calls and the batch (and image-to-image strength) each one received."""

    def __init__(self, pipe):
        self.pipe, self.batches, self.strengths = pipe, [], []

    def __call__(self, **kwargs):
        self.batches.append(len(kwargs["prompt"]))
        self.strengths.append(kwargs.get("strength"))
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


class FakeCapture:
    """CUDA graph capture's stand-in, with a real graph's contract: the function runs once on the static
    inputs at capture time, and each replay recomputes from whatever they hold into the same output tensor,
    so a wrapper that forgot to copy inputs in or clone the output out shows stale results."""

    def __init__(self, fail: Exception | None = None):
        self.fail, self.captured = fail, []

    def __call__(self, fn, static_inputs, pool):
        if self.fail is not None:
            raise self.fail
        self.captured.append({k: tuple(v.shape) for k, v in static_inputs.items()})
        output = fn(static_inputs)
        return (lambda: output.copy_(fn(static_inputs))), output


def load_pair(model_dir, capture):
    """The model twice, eager and with CUDA graphs (``capture`` standing in), at graph sizes 1, 2, 4."""
    values = {"model_dir": model_dir.name, "device": "cpu", "warmup": False,
              "cuda_graph_batch_sizes": [1, 2, 4], "vae_decode_batch": 2}
    eager = Engine.load(model_dir.parent, load_settings(values, {}))
    return eager, Engine.load(model_dir.parent, load_settings(values, {}), capture=capture)
