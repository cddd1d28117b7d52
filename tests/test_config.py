"""The shipped configuration itself: a regression here is a security regression."""

from __future__ import annotations

from pathlib import Path

from handler.schema import MAX_IMAGE_BODY_BYTES
from sdturbo_ops.serve import Listeners, container_properties
from sdturbo_ops.torchserve_config import read_properties
from tests.helpers import REPO


def properties(path: Path = REPO / "config.properties") -> dict[str, str]:
    return read_properties(path)


def container_config(tmp_path: Path) -> dict[str, str]:
    """What the container entrypoint writes for TorchServe with its default listeners."""
    written = tmp_path / "container.properties"
    written.write_text(container_properties(Listeners(), Path("/s"), Path("/plugins")))
    return properties(written)


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


def test_container_config_keeps_everything_but_inference_on_loopback(tmp_path):
    config = container_config(tmp_path)
    assert config["inference_address"] == "http://0.0.0.0:8080"
    for key in ("management_address", "metrics_address"):
        assert config[key].startswith("http://127.0.0.1:"), key
    assert config["grpc_inference_address"] == config["grpc_management_address"] == "127.0.0.1"
    assert config["enable_model_api"] == "false" and config["allowed_urls"] == "^$"
    # SageMaker authenticates callers with IAM and cannot send a TorchServe token
    assert config["disable_token_authorization"] == "true"
    assert (config["model_store"], config["plugins_path"], config["load_models"]) == ("/s", "/plugins",
                                                                                    "sdturbo=sdturbo")


def test_container_config_is_the_local_one_but_for_its_listeners_store_and_plugins(tmp_path):
    """Security settings and limits are written once, in config.properties; the container only moves its
    listeners and points at its model store and plugins."""
    local, container = properties(), container_config(tmp_path)
    own = {"inference_address", "management_address", "metrics_address", "grpc_inference_port",
           "grpc_management_port", "model_store", "plugins_path"}
    assert {key: value for key, value in container.items() if key not in own} == \
        {key: value for key, value in local.items() if key not in own}


def test_frontend_body_limit_lets_the_handler_answer_image_bodies_and_stays_bounded():
    """The handler's limits (64 KiB, 8 MiB + 64 KiB with an image) must be reachable, so the frontend's
    own limit sits above them; it bounds the memory of queued bodies, so not far above."""
    local = int(properties()["max_request_size"])
    assert MAX_IMAGE_BODY_BYTES < local <= 10 * 2**20


def test_local_config_serves_sdturbo_from_the_model_store():
    config = properties()
    assert config["model_store"] == "model-store"
    assert config["load_models"].startswith("sdturbo=")
