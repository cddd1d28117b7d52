"""Load and its costs (sdturbo_ops/load.py): percentiles as the reports state them, and the input image every
image-to-image row sends."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sdturbo_ops.load import input_image_base64, percentile


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
