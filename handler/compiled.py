"""Compiled kernels that ship with the model: torch.compile without compiling at every start.

Compiling the UNet and the VAE decoder with Inductor roughly halves their GPU time, but a cold compile
takes minutes. torch's portable compile-cache artifacts (``torch.compiler.save_cache_artifacts``) hold the
compiled kernels of a process; loaded into a fresh process before ``torch.compile``, they turn its
compiles into cache hits, so a worker's warm-up takes seconds, not minutes.

Layout, inside the diffusers model folder (so the kernels travel with the model data to S3):

    <model>/<compiled_kernels_dir>/sm_<XY>-<digest>/manifest.json   what they were built for
    <model>/<compiled_kernels_dir>/sm_<XY>-<digest>/artifacts.bin    save_cache_artifacts()'s bytes

They are built by ``scripts/build_compiled_kernels.py`` on a GPU of the kind the endpoint runs. A folder
is named by compute capability and a digest of the model and the shaping settings, so one model folder
can carry kernels for several GPU types and configurations (the full and the tiny decoder, say).

At start, with ``compile`` on and CUDA in use:
- a manifest that matches this process (GPU compute capability, torch/diffusers/Triton/CUDA versions, and
  every setting that shapes the compiled graphs) -> the artifacts are loaded and the modules compiled;
- no manifest, or one that does not match -> the worker logs why and serves eagerly (CUDA graphs still
  apply), unless ``compile_without_artifacts`` asks it to compile cold at start (how artifacts are built).

A compiled module only ever runs at the input shapes its warm-up compiled; any other call (a resolution
first seen in a request, say) runs the eager module, so no request waits for a compile.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from handler.cuda_graphs import DelegatingModule
from handler.settings import EngineSettings

logger = logging.getLogger(__name__)

MANIFEST, ARTIFACTS = "manifest.json", "artifacts.bin"
# Settings that change what is compiled (graph shapes, dtypes, layouts): artifacts built with other values
# would miss the cache and compile cold, so they count as a mismatch.
_SHAPING_SETTINGS = ("compile", "dtype", "decoder", "channels_last", "fuse_qkv", "decoder_upsample", "cuda_graphs",
                     "cuda_graph_batch_sizes", "vae_decode_batch", "warmup_size")

CompileFunction = Callable[..., torch.nn.Module]


@dataclass(frozen=True)
class KernelTarget:
    """What compiled kernels depend on: the machine, the libraries, the model's shape and our settings."""

    compute_capability: str
    torch: str
    diffusers: str
    triton: str
    cuda: str
    # Process-wide state that is part of Inductor's cache key: TorchServe's BaseHandler sets "high" on
    # import on sm_80+ GPUs, so kernels built outside TorchServe with "highest" all missed in its workers.
    matmul_precision: str
    model: str  # digest of the compiled components' config.json files
    settings: dict[str, Any]

    @classmethod
    def current(cls, device: torch.device, model_dir: Path, settings: EngineSettings) -> KernelTarget:
        major, minor = torch.cuda.get_device_capability(device) if device.type == "cuda" else (0, 0)
        values = settings.model_dump(include=set(_SHAPING_SETTINGS))
        values["cuda_graph_batch_sizes"] = list(values["cuda_graph_batch_sizes"])
        return cls(f"sm_{major}{minor}", torch.__version__, _version("diffusers"), _version("triton"),
                   str(torch.version.cuda), torch.get_float32_matmul_precision(), _model_digest(model_dir, settings),
                   values)

    def folder(self, root: Path) -> Path:
        shape = json.dumps({"model": self.model, "settings": self.settings}, sort_keys=True).encode()
        return root / f"{self.compute_capability}-{hashlib.sha256(shape).hexdigest()[:12]}"

    def mismatches(self, built: dict[str, Any]) -> list[str]:
        """Why kernels built for ``built`` (a manifest) cannot serve here; empty when they can."""
        reasons = []
        for name, here in asdict(self).items():
            there = built.get(name)
            if name == "settings":
                there = there or {}
                reasons += [f"setting {key}: built with {there.get(key)!r}, running {value!r}"
                            for key, value in here.items() if there.get(key) != value]
            elif there != here:
                reasons.append(f"{name}: built for {there}, running {here}")
        return reasons


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _model_digest(model_dir: Path, settings: EngineSettings) -> str:
    parts = ["unet", "vae" if settings.decoder == "full" else settings.tiny_decoder_dir]
    digest = hashlib.sha256()
    for part in parts:
        config = model_dir / part / "config.json"
        digest.update(config.read_bytes() if config.is_file() else b"-")
    return digest.hexdigest()[:16]


class WarmedShapesOnly(DelegatingModule):
    """Runs the compiled module only at input shapes compiled during warm-up, the eager one otherwise.

    While ``warming`` is on, every call goes to the compiled module and its shapes are remembered.
    """

    def __init__(self, inner: torch.nn.Module, compiled: Callable[..., Any]):
        super().__init__(inner)
        self.compiled = compiled
        self.warm_shapes: set[tuple] = set()
        self.warming = False
        self.eager_calls = 0

    def forward(self, *args, **kwargs):
        key = _shapes(args, kwargs)
        if self.warming:
            self.warm_shapes.add(key)
        elif key not in self.warm_shapes:
            self.eager_calls += 1
            return self.inner(*args, **kwargs)
        return self.compiled(*args, **kwargs)


def _shapes(args: tuple, kwargs: dict) -> tuple:
    """The shapes, dtypes and devices of every tensor in the call: what a compiled graph is guarded on."""
    def walk(value) -> Iterable:
        if torch.is_tensor(value):
            yield (tuple(value.shape), value.dtype, value.device.type)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from walk(item)
        elif isinstance(value, dict):
            for key in sorted(value):
                yield key
                yield from walk(value[key])

    return tuple(walk(args)) + tuple(walk(kwargs))


class CompiledKernels:
    """Compiles the pipeline's UNet and decoder from shipped artifacts (or cold, when asked to)."""

    def __init__(self, target: KernelTarget, root: Path, modules: list[WarmedShapesOnly], source: str):
        self.target = target
        self.root = root
        self.modules = modules
        self.source = source  # "artifacts", "cold" or "" (eager)

    @property
    def active(self) -> bool:
        return bool(self.modules)

    @classmethod
    def apply(cls, pipe, decoder, target: KernelTarget, root: Path, settings: EngineSettings,
              compile_fn: CompileFunction = torch.compile) -> CompiledKernels:
        """Replace ``pipe.unet`` and ``decoder.decoder`` by compiled versions when kernels built for
        ``target`` are in ``root`` (or ``compile_without_artifacts`` is set); otherwise change nothing."""
        source = _load_artifacts(target, root, settings.compile_without_artifacts)
        if not source:
            return cls(target, root, [], "")
        mode = settings.compile
        pipe.unet = WarmedShapesOnly(pipe.unet, compile_fn(pipe.unet, mode=mode))
        decoder.decoder = WarmedShapesOnly(decoder.decoder, compile_fn(decoder.decoder, mode=mode))
        logger.info("compiling UNet and decoder (mode=%s) %s", mode,
                    "from the shipped kernels" if source == "artifacts" else "from scratch: warm-up takes minutes")
        return cls(target, root, [pipe.unet, decoder.decoder], source)

    def warming(self, on: bool) -> None:
        for module in self.modules:
            module.warming = on
        if not on:
            self._report()

    def _report(self) -> None:
        """Say how the warm-up got its kernels: from the caches the artifacts filled, or compiled cold."""
        from torch._dynamo.utils import counters

        hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
        shapes = sum(len(module.warm_shapes) for module in self.modules)
        log = logger.warning if self.source == "artifacts" and misses else logger.info
        log("compiled kernels (%s) warm at %d input shapes: %d graphs from the cache, %d compiled cold",
            self.source, shapes, hits, misses)

    def save(self) -> Path:
        """Write this process's compiled kernels and their manifest; returns the folder."""
        saved = torch.compiler.save_cache_artifacts()
        if not saved:
            raise RuntimeError("torch recorded no compiled kernels to save (did the warm-up compile?)")
        folder = self.target.folder(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ARTIFACTS).write_bytes(saved[0])
        manifest = {**asdict(self.target), "shapes": sorted(str(s) for m in self.modules for s in m.warm_shapes)}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return folder


def _load_artifacts(target: KernelTarget, root: Path, compile_cold: bool) -> str:
    """Load matching artifacts into torch's compile caches; returns "artifacts", "cold" or "" (eager)."""
    folder = target.folder(root)
    if (folder / MANIFEST).is_file():
        candidates = [folder]
    else:  # built with other settings or for another model? Say what differs from the nearest.
        candidates = sorted(root.glob(f"{target.compute_capability}-*/{MANIFEST}"))[:1]
        candidates = [path.parent for path in candidates]
    if not candidates:
        reason = f"no compiled kernels for {target.compute_capability} in {root}"
    else:
        try:
            mismatches = target.mismatches(json.loads((candidates[0] / MANIFEST).read_text()))
        except ValueError as exc:
            mismatches = [f"unreadable manifest ({exc})"]
        if not mismatches:
            try:
                torch.compiler.load_cache_artifacts((candidates[0] / ARTIFACTS).read_bytes())
                return "artifacts"
            except Exception as exc:  # a damaged file must cost speed, never the worker
                mismatches = [f"loading {ARTIFACTS} failed ({type(exc).__name__}: {exc})"]
        reason = f"compiled kernels in {candidates[0]} cannot serve this worker: " + "; ".join(mismatches)
    if compile_cold:
        logger.warning("%s; compiling from scratch at start (compile_without_artifacts)", reason)
        return "cold"
    logger.warning("%s; serving eagerly (build them on this GPU type with `make compiled-kernels`)", reason)
    return ""
