"""The shipped configuration itself: a regression here is a security regression."""

from __future__ import annotations

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
    assert int(config["max_request_size"]) <= 1 << 20


def test_local_config_serves_sdturbo_from_the_model_store():
    config = properties(REPO / "config.properties")
    assert config["model_store"] == "model-store"
    assert config["load_models"].startswith("sdturbo=")
