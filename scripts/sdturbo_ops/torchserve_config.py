"""The one writer of TorchServe configuration: server properties derived from the repository's
config.properties, and model-config.yaml derived from the shipped one.

Every server this project starts (``make serve``, the tests, the benchmark, the container) takes
config.properties as it is and overrides only what differs for that server: addresses, ports, the model
store, the plugins folder. So the security settings and limits are written once, in config.properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sdturbo_ops.paths import CONFIG_PROPERTIES, PROFILES


# TorchServe's own default, for a properties file that does not set the address.
DEFAULT_MANAGEMENT_ADDRESS = "http://127.0.0.1:8081"
# Every TCP listener a TorchServe opens, with TorchServe's defaults for a file that does not name it
# (ConfigManager.getListener and getGRPCAddress/getGRPCPort in TorchServe's frontend): (address key, port
# key, default host, default port). The HTTP APIs take host and port from one URL; gRPC from two keys.
LISTENERS = (
    ("inference_address", None, "127.0.0.1", 8080),
    ("management_address", None, "127.0.0.1", 8081),
    ("metrics_address", None, "127.0.0.1", 8082),
    ("grpc_inference_address", "grpc_inference_port", "127.0.0.1", 7070),
    ("grpc_management_address", "grpc_management_port", "127.0.0.1", 7071),
)


@dataclass(frozen=True)
class Listener:
    """One port a server listens on: ``key`` is the property that sets it."""

    key: str
    host: str
    port: int
    scheme: str | None = None  # http or https for the HTTP APIs; None for gRPC

    @property
    def setting(self) -> tuple[str, str]:
        """(key, value) of the property that sets this listener's port."""
        return self.key, str(self.port) if self.scheme is None else f"{self.scheme}://{self.host}:{self.port}"


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


def listeners(path: Path = CONFIG_PROPERTIES) -> list[Listener]:
    """The TCP ports a server started with this properties file listens on (a ``unix:`` address has none)."""
    properties, found = read_properties(path), []
    for address_key, port_key, host, port in LISTENERS:
        address = properties.get(address_key)
        if port_key is None:
            if address is not None and address.startswith("unix:"):
                continue
            url = urlsplit(address or f"http://{host}:{port}")
            found.append(Listener(address_key, url.hostname or host, url.port or port, url.scheme))
        else:
            found.append(Listener(port_key, address or host, int(properties.get(port_key, port))))
    return found


def moved(found: list[Listener], first_port: int) -> list[Listener]:
    """The same listeners on ``first_port`` and the ports after it, in :data:`LISTENERS`' order (inference,
    management, metrics, gRPC inference, gRPC management), hosts kept."""
    return [replace(listener, port=first_port + offset) for offset, listener in enumerate(found)]


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

