"""handler/profiles.yaml: each model's sizing for the production GPU, read by the archive builder and the
SageMaker stack. A profile holds only what differs from the defaults, whose homes are model-config.yaml
(TorchServe's keys) and handler/settings.py (the engine's)."""

from __future__ import annotations

import pytest
import yaml

from handler.models import MODELS
from handler.settings import EngineSettings, load_settings
from tests.support.helpers import REPO

PROFILES = yaml.safe_load((REPO / "handler" / "profiles.yaml").read_text())
SHIPPED = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())


def test_every_model_has_a_profile_and_every_profile_a_model():
    assert set(PROFILES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_has_the_keys_its_readers_take(name):
    profile = PROFILES[name]
    assert set(profile) == {"resident_gpu_memory_gib", "model_config", "endpoint"}
    assert profile["resident_gpu_memory_gib"] > 0
    # TorchServe keys the shipped config knows, and handler: (infra/profiles.tf reads minWorkers, batchSize)
    assert set(profile["model_config"]) <= set(SHIPPED), set(profile["model_config"]) - set(SHIPPED)
    assert set(profile["endpoint"]) <= {"workers", "handler"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_restates_no_default(name):
    """A value equal to the default it overrides is a second copy, which would silently win when the
    default changes (the rule model-config.yaml is held to in test_settings.py)."""
    model_config, endpoint = PROFILES[name]["model_config"], PROFILES[name]["endpoint"]
    restated = [key for key, value in model_config.items() if key != "handler" and SHIPPED.get(key) == value]
    archived = load_settings({**(SHIPPED["handler"] or {}), **(model_config.get("handler") or {})}, {})
    defaults = load_settings(SHIPPED["handler"] or {}, {})
    restated += [f"handler.{key}" for key in model_config.get("handler") or {}
                 if getattr(archived, key) == getattr(defaults, key)]
    restated += [f"endpoint.handler.{key}" for key in endpoint.get("handler") or {}
                 if getattr(load_settings({**(model_config.get("handler") or {}), **endpoint["handler"]}, {}), key)
                 == getattr(archived, key)]
    workers = model_config.get("minWorkers", SHIPPED["minWorkers"])
    restated += ["endpoint.workers"] if endpoint.get("workers") == workers else []
    assert not restated, f"{name}'s profile restates defaults: {restated}; remove them"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_handler_settings_are_settings(name):
    for section in (PROFILES[name]["model_config"], PROFILES[name]["endpoint"]):
        values = section.get("handler") or {}
        assert set(values) <= set(EngineSettings.model_fields)
        load_settings(values, {})  # raises SettingsError on a bad value


def test_a_worker_s_ceiling_holds_what_the_model_holds_once_loaded():
    """The stack refuses a ceiling under resident_gpu_memory_gib; the profiles themselves must pass."""
    for name, profile in PROFILES.items():
        handler = {**(profile["model_config"].get("handler") or {}), **(profile["endpoint"].get("handler") or {})}
        ceiling = load_settings(handler, {}).max_gpu_memory_gib
        assert ceiling == 0 or ceiling > profile["resident_gpu_memory_gib"], name


def test_readme_model_table_shows_each_profile_s_sizing():
    """README's model table quotes each profile's workers and ceiling: it must say what the file says."""
    (row,) = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| instance (its profile)")]
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    for cell, name in zip(cells, ("sd-turbo", "sdxl-turbo"), strict=True):
        profile = PROFILES[name]
        handler = {**(profile["model_config"].get("handler") or {}), **(profile["endpoint"].get("handler") or {})}
        workers = profile["endpoint"].get("workers", profile["model_config"].get("minWorkers", SHIPPED["minWorkers"]))
        assert f"{workers} worker" in cell and f"{load_settings(handler, {}).max_gpu_memory_gib:g} GiB" in cell, cell
