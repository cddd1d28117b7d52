"""The reply's form from the Accept header: JSON by default, the image itself when asked, 406 otherwise."""

from __future__ import annotations

import pytest

from handler.negotiate import parse_accept, reply_format
from handler.parse import RequestError, parse_request

PLAIN = b'{"prompt": "a cat"}'
JPEG = b'{"prompt": "a cat", "output_format": "jpeg"}'
SEVERAL = b'{"prompt": "a cat", "num_images": 3}'

# (Accept, body) -> the image format replied with, None for JSON.
CHOSEN = [
    (None, PLAIN, None),
    ("", PLAIN, None),
    ("*/*", PLAIN, None),
    ("application/json", PLAIN, None),
    ("application/*", PLAIN, None),
    ("application/octet-stream", PLAIN, None),         # a type a JSON body satisfies
    ("text/html,application/xhtml+xml,*/*;q=0.8", PLAIN, None),  # a browser
    ("image/png", PLAIN, "png"),
    ("IMAGE/PNG; charset=x", PLAIN, "png"),
    ("image/jpeg", PLAIN, "jpeg"),
    ("image/webp", PLAIN, "webp"),
    ("image/*", PLAIN, "png"),                         # the body's output_format, PNG by default
    ("image/*", JPEG, "jpeg"),
    ("image/jpeg", JPEG, "jpeg"),
    ("image/png, */*", PLAIN, "png"),                  # the exact type outranks the wildcard
    ("image/png, application/json", PLAIN, None),      # a tie goes to JSON, the default
    ("image/png;q=0.5, application/json", PLAIN, None),
    ("image/png, application/json;q=0.5", PLAIN, "png"),
    ("image/gif, image/webp;q=0.1", PLAIN, "webp"),
    ("image/png;q=0, */*", PLAIN, None),
    ("image/png, application/json;q=0.5", SEVERAL, None),  # several images only fit in JSON
    ("*; q=.2, image/jpeg", PLAIN, "jpeg"),            # Java's bare *
    ("image/png;q=bad", PLAIN, "png"),
]


@pytest.mark.parametrize(("accept", "body", "fmt"), CHOSEN)
def test_accept_picks_the_reply(accept, body, fmt):
    assert reply_format(accept, parse_request(body)) == fmt


# (Accept, body) -> words the 406 must say.
REFUSED = [
    ("image/gif", PLAIN, "application/json, image/png, image/jpeg, image/webp"),
    ("text/html", PLAIN, "this endpoint replies with"),
    ("application/json;q=0, image/gif", PLAIN, "this endpoint replies with"),
    ("image/png", JPEG, "contradicts output_format 'jpeg'"),
    ("image/png", SEVERAL, "num_images is 3"),
    ("image/*", SEVERAL, "num_images is 3"),
]


@pytest.mark.parametrize(("accept", "body", "words"), REFUSED)
def test_unacceptable_accept_is_a_406_that_says_why(accept, body, words):
    with pytest.raises(RequestError) as refused:
        reply_format(accept, parse_request(body))
    assert refused.value.status == 406
    assert words in refused.value.message
    assert refused.value.errors[0]["field"] == "Accept"


def test_quality_values_are_read_and_bounded():
    ranges = parse_accept("image/png;q=0.3, */*;q=7, text/plain")
    assert [(r.type, r.subtype, r.q) for r in ranges] == [("image", "png", 0.3), ("*", "*", 1.0), ("text", "plain", 1.0)]
