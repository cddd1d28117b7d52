"""CUDA-graph plumbing (padding to captured sizes, chunking, static buffers, fallbacks), on the CPU.

There is no GPU here, so capture is replaced by a stand-in with a real graph's contract: the function runs
once on the static inputs at capture time, and each replay recomputes from whatever the static inputs
hold *into the same output tensor*. If the wrapper forgot to copy inputs in or clone the output out,
these tests would see stale or overwritten results. The real capture runs in scripts/bench.py on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handler.cuda_graphs import GraphedBatchFunction
from handler.jobs import Job
from handler.parse import parse_request
from handler.warmup import warm_up
from tests.support.engines import FakeCapture, load_pair
from tests.support.images import b64, encode, picture


def double(inputs):
    return inputs["x"] * 2 + inputs["y"].sum(dim=1, keepdim=True)


def make(sizes=(1, 2, 4), **kwargs):
    capture = kwargs.pop("capture", FakeCapture())
    return GraphedBatchFunction(double, sizes, name="double", capture=capture, **kwargs), capture


def batch(rows, offset=0.0):
    x = torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3) + offset
    return {"x": x, "y": torch.ones(rows, 5) * offset}


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 9])
def test_results_equal_eager_for_any_batch(rows):
    graphed, _ = make()
    inputs = batch(rows, offset=rows)
    assert torch.equal(graphed(inputs), double(inputs))


def test_batches_are_padded_to_the_next_size_and_chunked_above_the_largest():
    graphed, capture = make()
    graphed(batch(3))
    graphed(batch(9))  # 4 + 4 + 1
    assert [shapes["x"][0] for shapes in capture.captured] == [4, 1]
    assert graphed.graph_count == 2 and graphed.replays == 4


def test_each_call_copies_fresh_inputs_and_returns_its_own_output():
    graphed, _ = make()
    first = graphed(batch(2, offset=1.0))
    second = graphed(batch(2, offset=10.0))  # same graph, replayed over the same static tensors
    assert torch.equal(first, double(batch(2, offset=1.0)))
    assert torch.equal(second, double(batch(2, offset=10.0)))


def test_a_new_row_shape_is_a_new_graph_up_to_the_cap():
    graphed, capture = make(max_graphs=2)
    graphed(batch(1))
    graphed({"x": torch.zeros(1, 6), "y": torch.zeros(1, 5)})
    assert graphed.graph_count == 2
    third = {"x": torch.ones(1, 7), "y": torch.ones(1, 5)}
    assert torch.equal(graphed(third), double(third))  # over the cap: eager
    assert graphed.graph_count == 2 and graphed.eager_calls == 1


def test_a_capture_failure_falls_back_to_eager_for_good():
    graphed, _ = make(capture=FakeCapture(fail=RuntimeError("operation not permitted when stream is capturing")))
    inputs = batch(2)
    assert torch.equal(graphed(inputs), double(inputs))
    assert graphed.disabled and graphed(batch(1)).shape == (1, 3)
    assert graphed.eager_calls == 2


class OutOfMemoryAbove(FakeCapture):
    """A capture that has no room for graphs of more than ``rows`` rows."""

    def __init__(self, rows):
        super().__init__()
        self.rows, self.refused = rows, 0

    def __call__(self, fn, static_inputs, pool):
        if next(iter(static_inputs.values())).shape[0] > self.rows:
            self.refused += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return super().__call__(fn, static_inputs, pool)


def test_a_shape_without_room_for_its_graph_runs_eager_and_the_others_keep_their_graphs():
    capture = OutOfMemoryAbove(rows=2)
    graphed, _ = make(capture=capture)
    for _ in range(2):
        inputs = batch(4, offset=1)
        assert torch.equal(graphed(inputs), double(inputs))
    assert capture.refused == 1 and graphed.eager_calls == 2  # not tried again
    graphed(batch(2))
    assert not graphed.disabled and graphed.graph_count == 1 and graphed.replays == 1


def test_limiting_the_batch_drops_larger_graphs_and_chunks_instead():
    graphed, capture = make()
    graphed(batch(4))
    graphed.limit_batch(2)
    inputs = batch(5, offset=2)
    assert torch.equal(graphed(inputs), double(inputs))  # 2 + 2 + 1
    assert graphed.batch_sizes == [1, 2] and graphed.graph_count == 2
    assert [shapes["x"][0] for shapes in capture.captured] == [4, 2, 1]


def test_inputs_must_agree_on_the_batch():
    graphed, _ = make()
    with pytest.raises(ValueError, match="batch size"):
        graphed({"x": torch.zeros(2, 3), "y": torch.zeros(3, 5)})


def pixels(engine, requests, seeds):
    """Each image's pixels from the engine's generate stage and its decoder, the requests decoded together."""
    jobs = [Job(request, seed) for request, seed in zip(requests, seeds, strict=True)]
    engine.generate(jobs)
    return list(engine.vae.decode_images(torch.cat([job.latents for job in jobs])))


def assert_close_images(expected, got):
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        assert np.abs(have.astype(int) - want.astype(int)).max() <= 1  # batch size may change rounding


@pytest.mark.slow
def test_engine_through_graphs_matches_eager(tiny_sd_dir):
    """The engine with every graph installed (text encoder, UNet, VAE decode) gives the eager images."""
    capture = FakeCapture()
    eager, graphed = load_pair(tiny_sd_dir, capture)
    assert [g.name for g in graphed.graphs] == ["unet", "text_encoder", "vae_decode", "vae_encode"]

    requests = [parse_request({"prompt": f"a cat {i}", "width": 256, "height": 256}) for i in range(3)]
    seeds = [11, 12, 13]
    expected = pixels(eager, requests, seeds)
    for _ in range(2):  # the second pass replays the graphs captured by the first
        assert_close_images(expected, pixels(graphed, requests, seeds))
    unet, text_encoder, decode, encode_graph = graphed.graphs
    assert unet.replays == 2 and text_encoder.replays == 2 and decode.replays == 4  # 3 images: 2 + 1
    assert encode_graph.replays == 0  # text-to-image never encodes an image
    assert graphed.pipe.unet.config.in_channels == eager.pipe.unet.config.in_channels  # config still visible

    assert warm_up(graphed) > 0
    assert {shapes["sample"][0] for shapes in capture.captured if "sample" in shapes} == {1, 2, 4}
    # The warm-up also captured the VAE encoder at each slice size (vae_decode_batch 2), at its resolution.
    assert {shapes["pixels"] for shapes in capture.captured if "pixels" in shapes} == {(1, 512, 512, 3),
                                                                                       (2, 512, 512, 3)}


@pytest.mark.slow
def test_image_to_image_through_graphs_matches_eager(tiny_sd_dir):
    """Image-to-image adds one graph, the VAE encoder, in slices of vae_decode_batch (2 here); the UNet
    and text encoder graphs of text-to-image serve it too, and the images equal the eager ones."""
    eager, graphed = load_pair(tiny_sd_dir, FakeCapture())
    assert graphed.img2img_pipe.unet is graphed.pipe.unet and graphed.img2img_pipe.unet.graphed is graphed.graphs.unet
    image = b64(encode(picture(320, 256)))
    requests = [parse_request({"prompt": f"a cat {i}", "image": image, "seed": i}) for i in range(3)]
    expected = pixels(eager, requests, [1, 2, 3])
    for _ in range(2):
        assert_close_images(expected, pixels(graphed, requests, [1, 2, 3]))
    unet, text_encoder, _, encode_graph = graphed.graphs
    assert encode_graph.replays == 4 and encode_graph.eager_calls == 0  # 3 images in slices of 2, twice
    assert unet.replays == 2 and text_encoder.replays == 2  # one UNet step a call: 2 steps at strength 0.5


@pytest.mark.slow
def test_sdxl_unet_graphs_carry_its_added_conditions(tiny_sdxl_dir):
    """SDXL's UNet also takes pooled text embeddings and size ids; they are batch inputs of its graph.
    Its text encoders are asked for hidden states, so they stay eager."""
    eager, graphed = load_pair(tiny_sdxl_dir, FakeCapture())
    assert [g.name for g in graphed.graphs] == ["unet", "vae_decode", "vae_encode"]
    requests = [parse_request({"prompt": f"a dog {i}", "width": 256, "height": 256}) for i in range(2)]
    assert_close_images(pixels(eager, requests, [1, 2]), pixels(graphed, requests, [1, 2]))
    assert graphed.graphs.text_encoder is None and graphed.graphs.unet.replays == 1
