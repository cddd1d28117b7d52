"""The one writer of TorchServe configuration (sdturbo_ops/torchserve_config.py): derived properties keep the
source's lines and comments and change only what a server overrides; a derived model-config.yaml is the
shipped one with keys overridden."""

from __future__ import annotations

import yaml

from sdturbo_ops.paths import MODEL_CONFIG
from sdturbo_ops.torchserve_config import (
    DEFAULT_MANAGEMENT_ADDRESS, Listener, derive_properties, endpoint_sizing, listeners, management_address,
    model_config, moved, read_properties, write_model_config,
)

SOURCE = """# why the address is loopback
inference_address=http://127.0.0.1:8080
! another comment
management_address = http://127.0.0.1:8081
model_store=model-store
"""


def test_overrides_replace_in_place_drop_with_none_and_append_what_is_new(tmp_path):
    source = tmp_path / "config.properties"
    source.write_text(SOURCE)
    derived = derive_properties({"inference_address": "http://0.0.0.0:9090", "model_store": None,
                                 "plugins_path": "/plugins"}, source, "a test server")
    lines = derived.splitlines()
    assert lines[0].startswith(f"# Derived from {source}: a test server")
    assert lines[1:] == ["# why the address is loopback", "inference_address=http://0.0.0.0:9090", "! another comment",
                         "management_address = http://127.0.0.1:8081", "plugins_path=/plugins"]


def test_properties_are_read_without_comments_and_spaces(tmp_path):
    source = tmp_path / "config.properties"
    source.write_text(SOURCE)
    assert read_properties(source) == {"inference_address": "http://127.0.0.1:8080",
                                       "management_address": "http://127.0.0.1:8081", "model_store": "model-store"}
    assert management_address(source) == "http://127.0.0.1:8081"
    source.write_text("inference_address=http://127.0.0.1:8080\n")
    assert management_address(source) == DEFAULT_MANAGEMENT_ADDRESS


def test_a_model_config_is_the_shipped_one_with_keys_overridden(tmp_path):
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())
    target = write_model_config(MODEL_CONFIG, tmp_path / "model-config.yaml", {"batchSize": 2},
                                {"device": "cpu"})
    written = yaml.safe_load(target.read_text())
    assert written == {**shipped, "batchSize": 2, "handler": {**(shipped["handler"] or {}), "device": "cpu"}}


def test_raising_the_minimum_of_workers_raises_the_maximum_with_it():
    assert model_config(MODEL_CONFIG, {"minWorkers": 3})["maxWorkers"] == 3
    assert model_config(MODEL_CONFIG, {"minWorkers": 1, "maxWorkers": 4})["maxWorkers"] == 4


def test_the_endpoint_sizing_is_the_archives_profile_with_the_endpoint_section_on_top(tmp_path):
    profiles_file = tmp_path / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump({
        "packed": {"model_config": {"batchSize": 4, "handler": {"max_gpu_memory_gib": 14, "cuda_graphs": False}},
                   "endpoint": {}},
        "layered": {"model_config": {}, "endpoint": {"workers": 2, "handler": {"max_gpu_memory_gib": 6.5}}}}))
    assert endpoint_sizing("packed", profiles_file) == ({"batchSize": 4},
                                                        {"max_gpu_memory_gib": 14, "cuda_graphs": False})
    assert endpoint_sizing("layered", profiles_file) == ({"minWorkers": 2, "maxWorkers": 2},
                                                         {"max_gpu_memory_gib": 6.5})


def test_the_shipped_profiles_size_the_endpoint_as_the_stack_does():
    """infra/profiles.tf reads the same file: workers from the endpoint section, else the archive's."""
    overrides, handler = endpoint_sizing("sd-turbo")
    assert overrides["minWorkers"] == overrides["maxWorkers"] == 2 and handler["max_gpu_memory_gib"] == 6.5
    overrides, handler = endpoint_sizing("sdxl-turbo")
    assert "minWorkers" not in overrides and handler["max_gpu_memory_gib"] == 14


def test_every_listener_a_server_opens_is_read_with_torchserves_defaults_for_the_unnamed(tmp_path):
    """gRPC's two ports count too: a second server that moved only the HTTP ports once failed on 7070."""
    source = tmp_path / "config.properties"
    source.write_text("inference_address=https://0.0.0.0:9443\nmanagement_address=unix:/tmp/m.sock\n"
                      "grpc_inference_port=9070\n")
    assert listeners(source) == [Listener("inference_address", "0.0.0.0", 9443, "https"),
                                 Listener("metrics_address", "127.0.0.1", 8082, "http"),
                                 Listener("grpc_inference_port", "127.0.0.1", 9070),
                                 Listener("grpc_management_port", "127.0.0.1", 7071)]


def test_the_shipped_config_names_all_five_ports_and_moved_listeners_keep_their_hosts():
    shipped = listeners()
    assert [listener.port for listener in shipped] == [8080, 8081, 8082, 7070, 7071]
    assert all(listener.key in read_properties() for listener in shipped), "a port config.properties leaves unsaid"
    assert dict(listener.setting for listener in moved(shipped, 8090)) == {
        "inference_address": "http://127.0.0.1:8090", "management_address": "http://127.0.0.1:8091",
        "metrics_address": "http://127.0.0.1:8092", "grpc_inference_port": "8093", "grpc_management_port": "8094"}
