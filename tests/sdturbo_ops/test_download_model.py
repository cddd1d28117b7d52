"""The hub download (sdturbo_ops/download_model.py, scripts/download_model.py)."""

from __future__ import annotations

import re

from tests.support.helpers import run_script


def test_download_fails_cleanly_without_the_hub(tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = run_script("download_model.py", "--out", str(tmp_path / "m"), env=env)
    assert result.returncode == 1
    assert "error: download of stabilityai/sd-turbo failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_fp16_fix_vae_lands_where_the_engine_looks_for_it(tmp_path):
    from handler.settings import EngineSettings
    from sdturbo_ops.download_model import download_model

    fetched = []
    download_model("sdxl-turbo", tmp_path, None, tiny_decoder=True, fp16_fix_vae=True,
                   fetch=lambda repo, out, patterns, revision: fetched.append((repo, out)))
    assert fetched == [("stabilityai/sdxl-turbo", tmp_path), ("madebyollin/taesdxl", tmp_path / "taesd"),
                       ("madebyollin/sdxl-vae-fp16-fix", tmp_path / EngineSettings().fp16_fix_vae_dir)]


def test_sd_turbo_has_no_fp16_fix_vae_to_fetch(tmp_path):
    result = run_script("download_model.py", "--model", "sd-turbo", "--fp16-fix-vae", "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "decodes in fp16" in result.stderr and "Traceback" not in result.stderr


def test_each_download_is_announced_the_tiny_decoder_too(tmp_path):
    """Issue 35: `make model` (which passes --tiny-decoder) fetched a second repository without saying so."""
    import subprocess

    from sdturbo_ops.download_model import download_model
    from tests.support.helpers import REPO

    said = []
    download_model("sd-turbo", tmp_path, None, tiny_decoder=True, fetch=lambda *args: None, announce=said.append)
    assert said == [f"1/2: sd-turbo (fp16 safetensors), stabilityai/sd-turbo into {tmp_path}",
                    f"2/2: the tiny decoder (TAESD, for decoder: tiny), madebyollin/taesd into {tmp_path / 'taesd'}"]
    def make(*args: str) -> str:
        return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True).stdout

    assert "--tiny-decoder" in make("-n", "model")
    assert re.search(r"^  model .*tiny decoder", make("help"), re.MULTILINE), "make help: say it"


def test_the_download_names_its_repository_and_commit_for_the_images_metadata(tmp_path):
    from handler.metadata import ModelSource
    from sdturbo_ops.download_model import download_model

    download_model("sd-turbo", tmp_path, "main", tiny_decoder=False,
                   fetch=lambda repo, out, patterns, revision: "b261bac6fd2cf515557d5d0707481eafa0485ec2")
    assert ModelSource.read(tmp_path) == ModelSource("stabilityai/sd-turbo",
                                                     revision="b261bac6fd2cf515557d5d0707481eafa0485ec2")
