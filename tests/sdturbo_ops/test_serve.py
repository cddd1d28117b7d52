"""The container entrypoint's TorchServe configuration (sdturbo_ops/serve.py): config.properties but for its
listeners, store and plugins; everything but inference on loopback."""

from __future__ import annotations

from pathlib import Path

from sdturbo_ops.serve import Listeners, container_properties
from sdturbo_ops.torchserve_config import read_properties
from tests.support.helpers import REPO


def properties(path: Path = REPO / "config.properties") -> dict[str, str]:
    return read_properties(path)


def container_config(tmp_path: Path) -> dict[str, str]:
    """What the container entrypoint writes for TorchServe with its default listeners."""
    written = tmp_path / "container.properties"
    written.write_text(container_properties(Listeners(), Path("/s"), Path("/plugins")))
    return properties(written)


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
