from __future__ import annotations

import pytest
import yaml

from handler.settings import EngineSettings, SettingsError, load_settings
from tests.support.helpers import REPO


def test_shipped_model_config_is_valid_and_complete():
    config = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())
    settings = load_settings(config["handler"], {})
    assert settings.model_dir == "model"
    # every handler key in the YAML is a real setting (extra="forbid" guarantees it) and vice versa
    assert set(config["handler"]) <= set(EngineSettings.model_fields)


def test_shipped_model_config_restates_no_code_default():
    """One home per default: the YAML's handler: section holds overrides only. A key whose value equals
    the code's default is a second copy, which would silently win when the code's default changes."""
    section = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())["handler"] or {}
    shipped, defaults = load_settings(section, {}), EngineSettings()
    restated = sorted(key for key in section if getattr(shipped, key) == getattr(defaults, key))
    assert not restated, f"model-config.yaml restates handler/settings.py defaults: {restated}; remove them"


def test_the_shipped_engine_compiles_from_shipped_kernels_by_default():
    """The shipped behaviour (README: kernels from the model folder when present, eager otherwise) is the
    code's default, so every caller of EngineSettings gets it without a config file."""
    assert EngineSettings().compile == "default"


def test_environment_overrides_yaml():
    settings = load_settings({"device": "cuda", "png_compress_level": 6},
                             {"SDTURBO_DEVICE": "cpu", "SDTURBO_WARMUP": "false", "UNRELATED": "x"})
    assert (settings.device, settings.warmup, settings.png_compress_level) == ("cpu", False, 6)


@pytest.mark.parametrize("section, environ, field", [
    ({"devise": "cpu"}, {}, "devise"),
    ({}, {"SDTURBO_DEVICE": "tpu"}, "device"),
    ({"vae_decode_batch": 0}, {}, "vae_decode_batch"),
    ({}, {"SDTURBO_WARMUP_SIZE": "500"}, "warmup_size"),
])
def test_invalid_settings_name_the_field(section, environ, field):
    with pytest.raises(SettingsError, match=field):
        load_settings(section, environ)


@pytest.mark.parametrize("variable", ["SDTURBO_CUDA_GRAPH", "SDTURBO_MODEL_DIRECTORY", "SDTURBO_device",
                                      "SDTURBO_ANYTHING"])
def test_unknown_sdturbo_variable_fails_the_load(variable):
    with pytest.raises(SettingsError, match=variable):
        load_settings({}, {variable: "false"})


def test_other_prefixes_are_not_the_engines_business():
    settings = load_settings({}, {"SDSERVE_LOG_DIR": "/tmp/x", "SAGEMAKER_TS_BATCH_SIZE": "4", "SDTURBO": "x"})
    assert settings == load_settings({}, {})
