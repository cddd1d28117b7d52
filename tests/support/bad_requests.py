"""The parser's table of requests it must refuse, as data: (body, expected status, the field the error names).
The parser's tests (tests/handler/test_schema.py) and the real server's (tests/e2e/test_reliability.py)
run the same table, so a case added here is checked at both levels."""

from __future__ import annotations

import json

from handler.schema import MAX_IMAGE_CHARS, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_SEED, MAX_SIDE, MIN_SIDE
from tests.support.images import BAD_IMAGES, IMAGE


def body(**fields) -> bytes:
    """A JSON request body for "a cat", with ``fields`` added (or replacing the prompt)."""
    return json.dumps({"prompt": "a cat", **fields}).encode()



# (body, expected status, field the error must name)
BAD_REQUESTS = [
    (b"", 400, "body"),
    (b"   ", 400, "body"),
    (b"not json", 400, "body"),
    (b"[1, 2]", 400, "body"),
    (b'"a cat"', 400, "body"),
    (b"null", 400, "body"),
    (b"{}", 400, "prompt"),
    (body(prompt=""), 400, "prompt"),
    (body(prompt="   "), 400, "prompt"),
    (body(prompt=5), 400, "prompt"),
    (body(prompt="x" * (MAX_PROMPT_CHARS + 1)), 400, "prompt"),
    (body(seed=-1), 400, "seed"),
    (body(seed=MAX_SEED + 1), 400, "seed"),
    (body(seed="42"), 400, "seed"),
    (body(seed=1.5), 400, "seed"),
    (body(seed=True), 400, "seed"),
    (body(num_inference_steps=0), 400, "num_inference_steps"),
    (body(num_inference_steps=5), 400, "num_inference_steps"),
    (body(guidance_scale=-0.1), 400, "guidance_scale"),
    (body(guidance_scale=10.01), 400, "guidance_scale"),
    (b'{"prompt": "a", "guidance_scale": NaN}', 400, "guidance_scale"),
    (b'{"prompt": "a", "guidance_scale": Infinity}', 400, "guidance_scale"),
    (body(width=MIN_SIDE - 8), 400, "width"),
    (body(width=MAX_SIDE + 8), 400, "width"),
    (body(height=513), 400, "height"),
    (body(width=10**12), 400, "width"),
    (body(num_images=0), 400, "num_images"),
    (body(num_images=MAX_IMAGES + 1), 400, "num_images"),
    (body(output_format="gif"), 400, "output_format"),
    (body(negative_prompt="blurry"), 422, "negative_prompt"),  # no guidance would use it
    (body(negative_prompt="blurry", guidance_scale=1.0), 422, "negative_prompt"),
    (body(negative_prompt="", guidance_scale=2.0), 400, "negative_prompt"),
    (body(negative_prompt="x" * (MAX_PROMPT_CHARS + 1), guidance_scale=2.0), 400, "negative_prompt"),
    (body(negative_prompt=["fog"], guidance_scale=2.0), 400, "negative_prompt"),
    (body(metadata="false"), 400, "metadata"),
    (body(metadata=0), 400, "metadata"),
    (b"\xff\xfe\x00garbage", 400, "body"),
    (b'{"prompt": "\xff"}', 400, "body"),
    (b"[" * 5000 + b"]" * 5000, 400, "body"),
    (b'{"prompt": "a", "prompt": 3}', 400, "prompt"),
]


# (body, expected status, field the error must name): image-to-image's own mistakes. The image content
# cases are the image decoder's table (BAD_IMAGES, tests/support/images.py).
BAD_IMAGE_REQUESTS = [
    (body(strength=1.0), 400, "strength"),                                  # strength without an image
    (body(image=IMAGE, num_inference_steps=1), 400, "strength"),            # 1 x 0.5: no step would run
    (body(image=IMAGE, num_inference_steps=3, strength=0.33), 400, "strength"),  # int(0.99) = 0
    (body(image=IMAGE, strength=0), 400, "strength"),
    (body(image=IMAGE, strength=-0.5), 400, "strength"),
    (body(image=IMAGE, strength=1.01), 400, "strength"),
    (body(image=IMAGE, strength="0.5"), 400, "strength"),
    (b'{"prompt": "a", "image": "%s", "strength": NaN}' % IMAGE.encode(), 400, "strength"),
    (body(image=5), 400, "image"),
    (body(image=[IMAGE]), 400, "image"),
    (body(image={"url": "https://example.com/x.png"}), 400, "image"),
    (body(image=IMAGE, width=100), 400, "width"),
    (body(image=IMAGE, num_images=MAX_IMAGES + 1), 400, "num_images"),
    (body(image="A" * (MAX_IMAGE_CHARS + 4)), 400, "image"),                 # within the body limit, over the field's
] + [(body(image=text), status, "image") for text, status, _ in BAD_IMAGES]
