"""The shipped configuration itself: a regression here is a security regression."""

from __future__ import annotations

from handler.schema import MAX_IMAGE_BODY_BYTES
from tests.helpers import REPO


def properties(path):
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_local_config_binds_loopback_only():
    config = properties(REPO / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert config[key].startswith("http://127.0.0.1:"), key


def test_local_config_security_settings():
    config = properties(REPO / "config.properties")
    assert config["enable_model_api"] == "false"
    assert config["allowed_urls"] == "^$"
    # token auth is off only because of the loopback binding asserted above
    assert config["disable_token_authorization"] == "true"


def test_frontend_body_limit_lets_the_handler_answer_image_bodies_and_stays_bounded():
    """The handler's limits (64 KiB, 8 MiB + 64 KiB with an image) must be reachable, so the frontend's
    own limit sits above them; it bounds the memory of queued bodies, so not far above. The container
    writes its own copy (scripts/serve.py), held to the same value."""
    import serve as entrypoint  # scripts/ is on sys.path (tests.helpers)

    local = int(properties(REPO / "config.properties")["max_request_size"])
    args = entrypoint.parse_args(["serve"])
    container = dict(line.split("=", 1) for line in entrypoint.container_properties(args, REPO).splitlines())
    assert int(container["max_request_size"]) == local
    assert MAX_IMAGE_BODY_BYTES < local <= 10 * 2**20


def test_local_config_serves_sdturbo_from_the_model_store():
    config = properties(REPO / "config.properties")
    assert config["model_store"] == "model-store"
    assert config["load_models"].startswith("sdturbo=")
