"""The hub download (sdturbo_ops/download_model.py, scripts/download_model.py)."""

from __future__ import annotations

from tests.support.helpers import run_script


def test_download_fails_cleanly_without_the_hub(tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = run_script("download_model.py", "--out", str(tmp_path / "m"), env=env)
    assert result.returncode == 1
    assert "error: download of stabilityai/sd-turbo failed" in result.stderr
    assert "Traceback" not in result.stderr
