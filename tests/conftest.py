from __future__ import annotations

import subprocess

import pytest

from tests.support.container import SUMMARY
from tests.support.helpers import (
    PLAYGROUND_JAR, PLUGIN_JAR, PLUGINS_DIR, PYTHON, REPO, TINY_SD, TINY_SDXL, LocalTorchServe, ServeEntrypoint,
    build_archive, wait_until, write_model_config,
)


def pytest_terminal_summary(terminalreporter, config):
    """What the image test measured (size, build time), shown even when every test passes."""
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("container image")
        for line in lines:
            terminalreporter.write_line(line)


def _ensure_tiny_model(path, arch: str):
    if not (path / "model_index.json").is_file():
        command = [PYTHON, str(REPO / "scripts" / "build_offline_model.py"), "--size", "tiny", "--arch", arch,
                   "--out", str(path), "--force"]
        if arch == "sd":
            command.append("--tiny-decoder")
        subprocess.run(command, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def tiny_sd_dir():
    return _ensure_tiny_model(TINY_SD, "sd")


@pytest.fixture(scope="session")
def tiny_sdxl_dir():
    return _ensure_tiny_model(TINY_SDXL, "sdxl")


@pytest.fixture(scope="session")
def plugins_dir():
    if not (PLUGIN_JAR.is_file() and PLAYGROUND_JAR.is_file()):
        subprocess.run(["make", "plugin"], cwd=REPO, check=True, capture_output=True)
    return PLUGINS_DIR


@pytest.fixture(scope="session")
def batching_archive(tmp_path_factory, tiny_sd_dir):
    """A no-archive model folder whose config batches concurrent requests (up to 4, waiting 400 ms)."""
    root = tmp_path_factory.mktemp("batching-store")
    config = write_model_config(root / "model-config.yaml", batchSize=4, maxBatchDelay=400)
    build_archive(tiny_sd_dir, root / "store", config)
    return root / "store"


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory, batching_archive, plugins_dir):
    """Real TorchServe with the tiny SD-turbo model and the plugins (/ping, /playground), started once for the
    integration tests."""
    server = LocalTorchServe(batching_archive, tmp_path_factory.mktemp("torchserve"),
                             extra_env={"SDTURBO_DEVICE": "cpu"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sagemaker_model_dir(tmp_path_factory, tiny_sd_dir):
    """/opt/ml/model as SageMaker lays out uncompressed S3Prefix model data: the archive folder itself."""
    root = tmp_path_factory.mktemp("opt-ml")
    config = write_model_config(root / "model-config.yaml", batchSize=2, maxBatchDelay=50)
    store = root / "store"
    build_archive(tiny_sd_dir, store, config)
    return store / "sdturbo"


@pytest.fixture(scope="session")
def serve(tmp_path_factory, sagemaker_model_dir, plugins_dir):
    server = ServeEntrypoint(sagemaker_model_dir, tmp_path_factory.mktemp("serve"), plugins_dir)
    try:
        wait_until(server.settled, 180, 0.05, what="/ping to turn healthy")
        assert server.pings[-1] == 200, f"{server.last_ping}\n{server.output()[-2000:]}"
        yield server
    finally:
        server.stop()
