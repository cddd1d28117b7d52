"""The one writer of TorchServe configuration: server properties derived from the repository's
config.properties, and model-config.yaml derived from the shipped one.

Every server this project starts (``make serve``, the tests, the benchmark, the container) takes
config.properties as it is and overrides only what differs for that server: addresses, ports, the model
store, the plugins folder. So the security settings and limits are written once, in config.properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdturbo_ops.paths import CONFIG_PROPERTIES, PROFILES


# TorchServe's own default, for a properties file that does not set the address.
DEFAULT_MANAGEMENT_ADDRESS = "http://127.0.0.1:8081"


def _setting(line: str) -> tuple[str, str] | None:
    """(key, value) of a .properties line; None for a comment or a blank line."""
    if not line.strip() or line.lstrip().startswith(("#", "!")):
        return None
    key, _, value = line.partition("=")
    return key.strip(), value.strip()


def read_properties(path: Path = CONFIG_PROPERTIES) -> dict[str, str]:
    """``key=value`` pairs of a .properties file (comments and blank lines skipped)."""
    return dict(filter(None, map(_setting, path.read_text().splitlines())))


def management_address(path: Path = CONFIG_PROPERTIES) -> str:
    """Where a server started with this properties file answers the management API."""
    return read_properties(path).get("management_address", DEFAULT_MANAGEMENT_ADDRESS)


def derive_properties(overrides: Mapping[str, object | None], source: Path = CONFIG_PROPERTIES,
                      why: str = "") -> str:
    """``source``'s text with each key of ``overrides`` set to its value (None: the line is dropped).

    Keys ``source`` lacks are appended; its comments stay, so the derived file still says why each
    setting is what it is.
    """
    remaining = dict(overrides)
    lines = [f"# Derived from {source}: {why or 'server-specific keys'} overridden below or in place."]
    for line in source.read_text().splitlines():
        setting = _setting(line)
        if setting is not None and setting[0] in remaining:
            value = remaining.pop(setting[0])
            if value is not None:
                lines.append(f"{setting[0]}={value}")
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in remaining.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_properties(target: Path, overrides: Mapping[str, object | None], source: Path = CONFIG_PROPERTIES,
                     why: str = "") -> Path:
    target.write_text(derive_properties(overrides, source, why))
    return target


def model_config(source: Path, overrides: Mapping[str, Any] | None = None,
                 handler_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``source`` (a model-config.yaml) with top-level keys and ``handler:`` keys overridden.

    When only a minimum of workers was raised above the maximum, the maximum follows it (TorchServe
    refuses minWorkers > maxWorkers).
    """
    import yaml

    values = yaml.safe_load(source.read_text()) if source.is_file() else {}
    values = dict(values or {})
    values.update(overrides or {})
    if handler_overrides:
        values["handler"] = {**(values.get("handler") or {}), **handler_overrides}
    if values.get("minWorkers", 1) > values.get("maxWorkers", 1):
        values["maxWorkers"] = values["minWorkers"]
    return values


def write_model_config(source: Path, target: Path, overrides: Mapping[str, Any] | None = None,
                       handler_overrides: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`model_config` to ``target``; returns ``target``."""
    import yaml

    target.write_text(yaml.safe_dump(model_config(source, overrides, handler_overrides), sort_keys=False))
    return target


def profiles(path: Path = PROFILES) -> dict[str, dict[str, Any]]:
    """handler/profiles.yaml: each model's sizing for the production GPU, by model name."""
    import yaml

    return yaml.safe_load(path.read_text())


def profile_overrides(name: str, path: Path = PROFILES) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TorchServe keys, ``handler:`` keys) that model ``name``'s profile packs into its archive.

    Raises:
        KeyError: no profile has that name.
    """
    packed = dict(profiles(path)[name].get("model_config") or {})
    return packed, dict(packed.pop("handler", None) or {})


def endpoint_sizing(name: str, path: Path = PROFILES) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TorchServe keys, ``handler:`` keys) the endpoint runs model ``name`` with: what its archive packs
    (``model_config``) with the profile's ``endpoint`` section on top (workers per GPU, handler settings),
    as the SageMaker stack sets them (infra/profiles.tf).

    Raises:
        KeyError: no profile has that name.
    """
    overrides, handler = profile_overrides(name, path)
    endpoint = profiles(path)[name].get("endpoint") or {}
    if endpoint.get("workers"):
        overrides = {**overrides, "minWorkers": endpoint["workers"], "maxWorkers": endpoint["workers"]}
    return overrides, {**handler, **(endpoint.get("handler") or {})}

