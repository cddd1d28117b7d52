"""Where things are (sdturbo_ops/paths.py): every path the package names exists in a checkout, as the image
lays it out too."""

from __future__ import annotations

from sdturbo_ops import paths
from sdturbo_ops.archive import archive_path
from tests.support.helpers import REPO


def test_the_root_is_the_checkout():
    assert paths.ROOT == REPO
    assert (paths.ROOT / "scripts" / "sdturbo_ops" / "paths.py").is_file()


def test_the_files_the_package_reads_are_there():
    assert paths.CONFIG_PROPERTIES.is_file()
    assert (paths.HANDLER_DIR / "torchserve_handler.py").is_file()
    assert paths.MODEL_CONFIG.is_file() and paths.MODEL_CONFIG.parent == paths.HANDLER_DIR
    assert paths.PLUGIN_JAR.parent == paths.PLUGINS_DIR


def test_the_model_name_names_the_archive(tmp_path):
    assert archive_path(tmp_path) == tmp_path / paths.MODEL_NAME
    assert archive_path(tmp_path, fmt="zip-store") == tmp_path / f"{paths.MODEL_NAME}.mar"
