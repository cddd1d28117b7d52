"""The shipped configuration itself: a regression here is a security regression."""

from __future__ import annotations

from pathlib import Path

from handler.schema import MAX_IMAGE_BODY_BYTES
from sdturbo_ops.torchserve_config import read_properties
from tests.support.helpers import REPO


def properties(path: Path = REPO / "config.properties") -> dict[str, str]:
    return read_properties(path)


def test_local_config_binds_loopback_only():
    config = properties()
    for key in ("inference_address", "management_address", "metrics_address"):
        assert config[key].startswith("http://127.0.0.1:"), key
    assert config["grpc_inference_address"] == config["grpc_management_address"] == "127.0.0.1"


def test_local_config_security_settings():
    config = properties()
    assert config["enable_model_api"] == "false"
    assert config["allowed_urls"] == "^$"
    # token auth is off only because of the loopback binding asserted above
    assert config["disable_token_authorization"] == "true"


def test_frontend_body_limit_lets_the_handler_answer_image_bodies_and_stays_bounded():
    """The handler's limits (64 KiB, 8 MiB + 64 KiB with an image) must be reachable, so the frontend's
    own limit sits above them; it bounds the memory of queued bodies, so not far above."""
    local = int(properties()["max_request_size"])
    assert MAX_IMAGE_BODY_BYTES < local <= 10 * 2**20


def test_local_config_serves_sdturbo_from_the_model_store():
    config = properties()
    assert config["model_store"] == "model-store"
    assert config["load_models"].startswith("sdturbo=")


def test_bodies_reach_the_handler_as_raw_bytes():
    """One strict JSON parser (handler/schema.py) sees every body. The frontend tells each worker this
    setting through TS_DECODE_INPUT_REQUEST, so it lives here and nowhere in the handler."""
    assert properties()["decode_input_request"] == "false"


def test_local_config_grants_no_other_origin_access():
    """The playground is served by TorchServe itself (plugins/playground), on the API's own origin, so CORS
    stays off as TorchServe ships it: no page from elsewhere may read a reply."""
    assert not [key for key in properties() if key.startswith("cors_")]
