"""Load and its costs (sdturbo_ops/load.py): percentiles as the reports state them, and the input image every
image-to-image row sends."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sdturbo_ops.load import client_processes, input_image_base64, percentile, run_clients, sweep


@pytest.mark.parametrize("values, q, expected", [
    ([], 50, None),
    ([7.0], 99, 7.0),
    ([4.0, 1.0, 3.0, 2.0, 5.0], 50, 3.0),
    ([4.0, 1.0, 3.0, 2.0, 5.0], 0, 1.0),
    ([4.0, 1.0, 3.0, 2.0, 5.0], 100, 5.0),
    (list(map(float, range(1, 101))), 90, 90.0),
])
def test_percentile_is_the_nearest_rank_of_the_sorted_values(values, q, expected):
    assert percentile(values, q) == expected


def test_the_input_image_is_a_png_of_the_size_asked():
    image = Image.open(io.BytesIO(base64.b64decode(input_image_base64(256))))
    assert (image.format, image.size, image.mode) == ("PNG", (256, 256), "RGB")


@pytest.mark.integration
def test_image_replies_cross_the_wire_in_a_quarter_fewer_bytes(torchserve):
    """The sweep both ways (bench.py --image-replies): the same images, without base64's third."""
    url = f"{torchserve.url}/predictions/sdturbo"
    as_json = sweep(url, [2], 4, 120, "json")
    as_image = sweep(url, [2], 4, 120, "image", accept="image/png")
    assert as_json[0]["errors"] == as_image[0]["errors"] == 0
    assert as_json[0]["images_per_s"] > 0 and as_image[0]["images_per_s"] > 0
    assert as_image[0]["reply_bytes"] < 0.8 * as_json[0]["reply_bytes"]


@pytest.mark.parametrize("concurrency, cores, expected", [(1, 16, 1), (64, 16, 4), (64, 64, 8), (3, 64, 3), (64, 2, 1)])
def test_clients_spread_over_processes_up_to_a_quarter_of_the_cores(monkeypatch, concurrency, cores, expected):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert client_processes(concurrency) == expected


@pytest.mark.integration
def test_the_clients_send_every_request_once_from_several_processes(torchserve, monkeypatch):
    """The closed loop across processes stops at the total: six requests from four clients in two
    processes, each answered and read."""
    monkeypatch.setattr("os.cpu_count", lambda: 8)  # two processes of two clients each
    outcomes = run_clients(f"{torchserve.url}/predictions/sdturbo", 4, 6, 120)
    assert len(outcomes) == 6 and all(o.status == 200 and o.images == 1 for o in outcomes)
    assert all(o.sent_at < o.received_at for o in outcomes)
