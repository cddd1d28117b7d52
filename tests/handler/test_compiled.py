"""Compiled kernels shipped with the model (handler/compiled.py), on the CPU with a stand-in compiler.

torch.compile and its cache artifacts only pay (and are only used) on CUDA; here a stand-in "compiler"
records what it was asked to compile and counts the calls its result receives, and the cache functions
of torch.compiler are replaced by recorders, so every decision is exercised: load, refuse and say why,
serve eagerly, never run compiled code at a shape that was not compiled during warm-up.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import pytest
import torch

from handler.compiled import ARTIFACTS, MANIFEST, CompiledKernels, KernelTarget
from handler.engine import Engine
from handler.warmup import warm_up
from handler.parse import parse_request
from handler.settings import load_settings


class StandInCompiler:
    """``compile_fn``: returns a callable that counts calls per module and runs the module eagerly."""

    def __init__(self):
        self.compiled, self.calls = [], {}

    def __call__(self, module, mode):
        name = type(module).__name__
        self.compiled.append((name, mode))
        self.calls[name] = 0

        def run(*args, **kwargs):
            self.calls[name] += 1
            return module(*args, **kwargs)

        return run


SETTINGS = {"device": "cpu", "warmup": False, "compile": "default", "cuda_graph_batch_sizes": [1, 2],
            "vae_decode_batch": 2, "warmup_size": 256}


@pytest.fixture
def model(tiny_sd_dir):
    settings = load_settings({"model_dir": tiny_sd_dir.name, **SETTINGS}, {})
    engine = Engine.load(tiny_sd_dir.parent, settings)
    target = replace(KernelTarget.current(torch.device("cpu"), tiny_sd_dir, settings), compute_capability="sm_90")
    return engine, settings, target


@pytest.fixture
def cache_calls(monkeypatch):
    calls = {"loaded": [], "saved": 0}
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda data: calls["loaded"].append(data))

    def save():
        calls["saved"] += 1
        return b"compiled kernels", None

    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", save)
    return calls


def ship(root, target, **changes):
    folder = target.folder(root)  # where kernels built for exactly ``target`` would be
    if "model" in changes or "settings" in changes:
        folder = root / f"{target.compute_capability}-builtforsomethingelse"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({**asdict(target), **changes}))
    (folder / ARTIFACTS).write_bytes(b"compiled kernels")


def apply(engine, settings, target, root, compiler):
    engine.kernels = CompiledKernels.apply(engine.pipe, engine.vae.decoder, target, root, settings, compiler)
    return engine.kernels


def test_matching_kernels_are_loaded_then_compiled_code_runs_only_at_warmed_shapes(model, cache_calls, tmp_path):
    engine, settings, target = model
    ship(tmp_path, target)
    compiler = StandInCompiler()
    kernels = apply(engine, settings, target, tmp_path, compiler)
    assert kernels.active and kernels.source == "artifacts"
    assert cache_calls["loaded"] == [b"compiled kernels"]
    assert [name for name, _ in compiler.compiled] == ["UNet2DConditionModel", "Decoder"]

    warm_up(engine)  # batches 1 and 2 at 256x256, then one request: the only shapes compiled code may run
    warm = dict(compiler.calls)
    assert warm["UNet2DConditionModel"] >= 2 and warm["Decoder"] >= 2

    same_shape = engine.serve_batch([parse_request({"prompt": "a cat", "width": 256, "height": 256})])[0]
    assert same_shape.status == 200 and compiler.calls["UNet2DConditionModel"] == warm["UNet2DConditionModel"] + 1
    other_shape = engine.serve_batch([parse_request({"prompt": "a cat", "width": 320, "height": 256})])[0]
    assert other_shape.status == 200
    assert compiler.calls["UNet2DConditionModel"] == warm["UNet2DConditionModel"] + 1  # ran eagerly instead
    assert engine.pipe.unet.eager_calls == 1 and engine.vae.decoder.decoder.eager_calls == 1


@pytest.mark.parametrize("changes, reason", [
    ({"torch": "2.11.0+cu130"}, "torch: built for 2.11.0+cu130"),
    ({"diffusers": "0.30.0"}, "diffusers: built for 0.30.0"),
    ({"model": "0123456789abcdef"}, "model: built for 0123456789abcdef"),
    ({"settings": {**SETTINGS, "vae_decode_batch": 8}}, "setting vae_decode_batch: built with 8"),
])
def test_kernels_built_for_something_else_are_refused_with_the_reason_and_the_worker_serves_eagerly(
        model, cache_calls, tmp_path, caplog, changes, reason):
    engine, settings, target = model
    if "settings" in changes:
        changes = {"settings": {**target.settings, "vae_decode_batch": 8}}
    ship(tmp_path, target, **changes)
    compiler = StandInCompiler()
    with caplog.at_level(logging.WARNING, logger="handler.compiled"):
        kernels = apply(engine, settings, target, tmp_path, compiler)
    assert not kernels.active and not compiler.compiled and not cache_calls["loaded"]
    assert reason in caplog.text and "serving eagerly" in caplog.text
    assert engine.serve_batch([parse_request({"prompt": "a cat", "width": 256, "height": 256})])[0].status == 200


def test_kernels_for_another_gpu_type_are_not_looked_at(model, cache_calls, tmp_path, caplog):
    engine, settings, target = model
    ship(tmp_path, replace(target, compute_capability="sm_75"))  # a T4's kernels, on an sm_90 worker
    with caplog.at_level(logging.WARNING, logger="handler.compiled"):
        kernels = apply(engine, settings, target, tmp_path, StandInCompiler())
    assert not kernels.active and "no compiled kernels for sm_90" in caplog.text


def test_damaged_artifacts_cost_speed_not_the_worker(model, tmp_path, monkeypatch, caplog):
    engine, settings, target = model
    ship(tmp_path, target)

    def load(data):
        raise RuntimeError("unpickling failed")

    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", load)
    with caplog.at_level(logging.WARNING, logger="handler.compiled"):
        kernels = apply(engine, settings, target, tmp_path, StandInCompiler())
    assert not kernels.active and "unpickling failed" in caplog.text


def test_building_compiles_cold_at_start_and_saves_kernels_with_their_manifest(model, cache_calls, tmp_path):
    engine, settings, target = model
    settings = settings.model_copy(update={"compile_without_artifacts": True})
    compiler = StandInCompiler()
    kernels = apply(engine, settings, target, tmp_path, compiler)
    assert kernels.source == "cold" and compiler.compiled and not cache_calls["loaded"]
    warm_up(engine)
    folder = kernels.save()
    assert folder.parent == tmp_path and folder.name.startswith("sm_90-")
    assert (folder / ARTIFACTS).read_bytes() == b"compiled kernels"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert not target.mismatches(manifest) and manifest["shapes"]  # what a worker like this one accepts


def test_compile_is_a_cuda_only_lever(tiny_sd_dir):
    settings = load_settings({"model_dir": tiny_sd_dir.name, **SETTINGS}, {})
    assert Engine.load(tiny_sd_dir.parent, settings).kernels is None


def test_kernels_for_several_configurations_live_side_by_side(model, cache_calls, tmp_path):
    engine, settings, target = model
    tiny = replace(target, settings={**target.settings, "decoder": "tiny"})
    for built, payload in ((tiny, b"tiny decoder kernels"), (target, b"full decoder kernels")):
        folder = built.folder(tmp_path)
        folder.mkdir(parents=True)
        (folder / MANIFEST).write_text(json.dumps(asdict(built)))
        (folder / ARTIFACTS).write_bytes(payload)
    assert apply(engine, settings, target, tmp_path, StandInCompiler()).active
    assert cache_calls["loaded"] == [b"full decoder kernels"]


def test_kernels_built_under_another_matmul_precision_are_refused(model, cache_calls, tmp_path, caplog):
    """TorchServe's BaseHandler sets float32 matmul precision "high" on import (on sm_80+); kernels built
    outside it under "highest" were all compiled cold again inside the workers (seen on an H200)."""
    engine, settings, target = model
    ship(tmp_path, replace(target, matmul_precision="highest"))
    with caplog.at_level(logging.WARNING, logger="handler.compiled"):
        kernels = apply(engine, settings, replace(target, matmul_precision="high"), tmp_path, StandInCompiler())
    assert not kernels.active and "matmul_precision: built for highest, running high" in caplog.text


def test_the_engine_runs_cuda_with_the_matmul_precision_torchserve_sets():
    from handler.device import configure_matmul

    before = torch.get_float32_matmul_precision()
    try:
        configure_matmul(torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == before
        configure_matmul(torch.device("cuda", 0))
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
