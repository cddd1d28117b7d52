"""Load and its costs (sdturbo_ops/load.py): percentiles as the reports state them, and the input image every
image-to-image row sends."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sdturbo_ops.load import input_image_base64, percentile, sweep


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
