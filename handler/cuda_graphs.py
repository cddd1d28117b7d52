"""CUDA graphs for the engine's heavy calls (text encoder, UNet, VAE decode and, for image-to-image, VAE
encode) at a few fixed batch sizes.

At small batches eager PyTorch is bound by kernel launches: one SD-turbo step is thousands of small
kernels, each paying Python and driver overhead. Replaying a captured CUDA graph launches all of them
at once. A graph has fixed shapes, so a call's batch is padded up to the next captured size (and a batch
larger than the largest size runs as several chunks). Graphs are captured lazily, the first time a
(size, shapes) key is seen; the engine's warm-up visits every size at its warm-up resolution, so serving
at that resolution never pays a capture. Other resolutions are captured on first use, up to a cap, then
run eager.

Captured graphs read from and write to fixed ("static") tensors: inputs are copied in before a replay and
the output is cloned out at once, so the next replay can never overwrite what a caller holds. All graphs
of one engine share a memory pool; that is safe because they only ever run one at a time, on one stream,
and nothing but their static inputs/outputs outlives a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from handler.memory import release_device_cache

logger = logging.getLogger(__name__)

BatchFunction = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
# capture(fn, static_inputs, pool) -> (replay, static_output). Injected so the padding logic is testable
# on machines without CUDA.
CaptureFunction = Callable[[BatchFunction, dict[str, torch.Tensor], object], tuple[Callable[[], None], torch.Tensor]]


def capture_cuda_graph(fn: BatchFunction, static_inputs: dict[str, torch.Tensor], pool) -> tuple:
    """Run ``fn`` once eagerly on a side stream (lazy initialisation: cuDNN/cuBLAS handles, kernel
    selection, a torch.compile of this shape), then capture it."""
    device = next(iter(static_inputs.values())).device
    with torch.cuda.device(device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            fn(static_inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            static_output = fn(static_inputs)
    return graph.replay, static_output


@dataclass
class _Graph:
    replay: Callable[[], None]
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


def _static_like(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """A tensor of ``size`` rows shaped like ``tensor``'s rows (same memory format), filled from it; the
    padding rows repeat the last real row so that padded work is ordinary, finite work."""
    static = tensor.new_empty((size, *tensor.shape[1:]))
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        static = static.contiguous(memory_format=torch.channels_last)
    rows = tensor.shape[0]
    static[:rows].copy_(tensor)
    static[rows:].copy_(tensor[-1:].expand(size - rows, *tensor.shape[1:]))
    return static


class GraphedBatchFunction:
    """Calls ``fn(inputs) -> tensor`` through CUDA graphs; every input and the output are batch-major."""

    def __init__(self, fn: BatchFunction, batch_sizes: Sequence[int], *, name: str, pool=None,
                 max_graphs: int = 24, capture: CaptureFunction = capture_cuda_graph):
        if not batch_sizes or min(batch_sizes) < 1:
            raise ValueError(f"batch sizes must be positive, got {batch_sizes!r}")
        self.fn = fn
        self.batch_sizes = sorted(set(batch_sizes))
        self.name = name
        self.pool = pool
        self.max_graphs = max_graphs
        self._capture = capture
        self._graphs: dict[tuple, _Graph] = {}
        self._too_big: set[tuple] = set()
        self.disabled = False
        self.eager_calls = 0
        self.replays = 0

    @property
    def graph_count(self) -> int:
        return len(self._graphs)

    def limit_batch(self, largest: int) -> None:
        """Serve with graph sizes up to ``largest`` only (larger batches run in chunks of it); graphs
        already captured above it are dropped."""
        self.batch_sizes = [size for size in self.batch_sizes if size <= largest] or [1]
        for key in [key for key in self._graphs if key[0] > self.batch_sizes[-1]]:
            del self._graphs[key]

    def padded_size(self, rows: int) -> int:
        """The smallest captured batch size that holds ``rows`` (callers chunk above the largest)."""
        return next(size for size in self.batch_sizes if size >= rows)

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        rows = _batch_rows(inputs)
        largest = self.batch_sizes[-1]
        if rows > largest:
            chunks = [{k: v[start:start + largest] for k, v in inputs.items()} for start in range(0, rows, largest)]
            return torch.cat([self(chunk) for chunk in chunks])
        graph = None if self.disabled else self._graph_for(inputs, rows)
        if graph is None:
            self.eager_calls += 1
            return self.fn(inputs)
        for key, tensor in inputs.items():
            graph.inputs[key][:rows].copy_(tensor)
        graph.replay()
        self.replays += 1
        return graph.output[:rows].clone()

    def _graph_for(self, inputs: Mapping[str, torch.Tensor], rows: int) -> _Graph | None:
        size = self.padded_size(rows)
        key = (size, *sorted((k, tuple(v.shape[1:]), v.dtype, v.device) for k, v in inputs.items()))
        graph = self._graphs.get(key)
        if graph is not None or len(self._graphs) >= self.max_graphs or key in self._too_big:
            return graph
        static_inputs = {k: _static_like(v, size) for k, v in inputs.items()}
        try:
            replay, output = self._capture(self.fn, static_inputs, self.pool)
        except torch.OutOfMemoryError:
            # A graph keeps its buffers for good; where they do not fit (under max_gpu_memory_gib, say),
            # this shape runs eager, which frees its memory after each call. Other shapes still capture.
            del static_inputs
            release_device_cache(next(iter(inputs.values())).device)
            logger.warning("no memory to capture a CUDA graph for %s at batch %d; that shape runs eager",
                           self.name, size)
            self._too_big.add(key)
            return None
        except Exception:
            # An op that cannot be captured (a host sync, say) must not take serving down: run eager.
            logger.exception("capturing a CUDA graph for %s failed; it runs eager from now on", self.name)
            self.disabled = True
            return None
        graph = self._graphs[key] = _Graph(replay, static_inputs, output)
        logger.info("captured a CUDA graph for %s at batch %d (%d graphs)", self.name, size, len(self._graphs))
        return graph


def _batch_rows(inputs: Mapping[str, torch.Tensor]) -> int:
    sizes = {tensor.shape[0] for tensor in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


class DelegatingModule(torch.nn.Module):
    """A module that replaces a diffusers/transformers component and forwards everything else (config,
    dtype, device...) to it, so the pipeline cannot tell the difference."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


class _Graphed(DelegatingModule):
    def __init__(self, inner: torch.nn.Module, graphed: GraphedBatchFunction):
        super().__init__(inner)
        self.graphed = graphed


class GraphedUNet(_Graphed):
    """``UNet2DConditionModel`` through CUDA graphs when called the way the turbo pipelines call it."""

    @classmethod
    def wrap(cls, unet: torch.nn.Module, batch_sizes: Sequence[int], pool=None, **kwargs) -> GraphedUNet:
        def run(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
            added = {k.removeprefix("added_"): v for k, v in inputs.items() if k.startswith("added_")}
            return unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"],
                        added_cond_kwargs=added or None, return_dict=False)[0]

        return cls(unet, GraphedBatchFunction(run, batch_sizes, name="unet", pool=pool, **kwargs))

    def forward(self, sample, timestep, encoder_hidden_states=None, *args, return_dict=True, **kwargs):
        added = kwargs.pop("added_cond_kwargs", None) or {}
        plain = (not args and all(value is None for value in kwargs.values()) and torch.is_tensor(sample)
                 and torch.is_tensor(encoder_hidden_states) and all(torch.is_tensor(v) for v in added.values()))
        if not plain:
            return self.inner(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict,
                              added_cond_kwargs=added or None, **kwargs)
        rows = sample.shape[0]
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.dim() == 0 or timestep.shape[0] == 1:
            timestep = timestep.reshape(1).expand(rows)
        inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": encoder_hidden_states,
                  **{f"added_{k}": v for k, v in added.items()}}
        output = self.graphed(inputs)
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=output)
        return (output,)


class GraphedTextEncoder(_Graphed):
    """A CLIP text encoder through CUDA graphs for the plain call ``encoder(input_ids)[0]`` (SD 2.x);
    calls asking for hidden states or masks (SDXL, clip_skip) run eager."""

    @classmethod
    def wrap(cls, encoder: torch.nn.Module, batch_sizes: Sequence[int], pool=None, **kwargs) -> GraphedTextEncoder:
        def run(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return encoder(inputs["input_ids"])[0]

        return cls(encoder, GraphedBatchFunction(run, batch_sizes, name="text_encoder", pool=pool, **kwargs))

    def forward(self, input_ids=None, attention_mask=None, *args, **kwargs):
        if args or attention_mask is not None or any(kwargs.values()) or not torch.is_tensor(input_ids):
            return self.inner(input_ids, attention_mask, *args, **kwargs)
        return (self.graphed({"input_ids": input_ids}),)


@dataclass(frozen=True)
class InstalledGraphs:
    """The graphed calls ``install_graphs`` put in place, one per heavy call of the engine."""

    unet: GraphedBatchFunction
    text_encoder: GraphedBatchFunction | None  # None where the text encoders run eager (SDXL)
    vae_decode: GraphedBatchFunction
    vae_encode: GraphedBatchFunction  # image-to-image's starting images, in the VAE's slices

    def __iter__(self) -> Iterator[GraphedBatchFunction]:
        graphs = (self.unet, self.text_encoder, self.vae_decode, self.vae_encode)
        return iter([graphed for graphed in graphs if graphed is not None])

    def limit_batch(self, largest: int) -> None:
        """Every graphed call serves batches of at most ``largest`` (GraphedBatchFunction.limit_batch)."""
        for graphed in self:
            graphed.limit_batch(largest)

    def counts(self) -> tuple[int, int, int]:
        """Graphs captured, replays and eager calls so far, over all the graphed calls."""
        return (sum(g.graph_count for g in self), sum(g.replays for g in self), sum(g.eager_calls for g in self))


def install_graphs(pipe, vae, batch_sizes: Sequence[int], vae_slice: int, pool=None,
                   capture: CaptureFunction = capture_cuda_graph) -> InstalledGraphs:
    """Put graphs in place of ``pipe``'s UNet and text encoder and ``vae``'s (handler/vae.py) two batch
    functions; returns them, which the warm-up captures. Made before the image-to-image pipeline, which then
    shares the graphed UNet and text encoder.

    The VAE's graphs are captured at the UNet's sizes below one slice (``vae_slice`` images) and at the
    slice itself: the VAE never runs more images at once. Image-to-image's VAE encoder is the one call
    the text-to-image graphs do not cover; it runs in the same slices.
    """
    pipe.unet = GraphedUNet.wrap(pipe.unet, batch_sizes, pool, capture=capture)
    text_encoder = None
    if getattr(pipe, "text_encoder_2", None) is None:  # SDXL asks its encoders for hidden states: eager
        pipe.text_encoder = GraphedTextEncoder.wrap(pipe.text_encoder, batch_sizes, pool, capture=capture)
        text_encoder = pipe.text_encoder.graphed
    vae_sizes = sorted({size for size in batch_sizes if size < vae_slice} | {vae_slice})
    vae.decode_chunk = GraphedBatchFunction(vae.decode_chunk, vae_sizes, name="vae_decode", pool=pool, capture=capture)
    vae.encode_chunk = GraphedBatchFunction(vae.encode_chunk, vae_sizes, name="vae_encode", pool=pool, capture=capture)
    return InstalledGraphs(pipe.unet.graphed, text_encoder, vae.decode_chunk, vae.encode_chunk)
