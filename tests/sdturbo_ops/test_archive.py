"""The archive builder (sdturbo_ops/archive.py, scripts/build_archive.py)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.helpers import REPO, run_script


@pytest.mark.parametrize("fmt, expected", [("no-archive", "sdturbo"), ("zip-store", "sdturbo.mar")])
def test_archive_holds_handler_config_and_weights(tmp_path, tiny_sd_dir, fmt, expected):
    import zipfile

    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    target = tmp_path / expected
    if fmt == "no-archive":
        names = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    else:
        names = set(zipfile.ZipFile(target).namelist())
    for required in ("MAR-INF/MANIFEST.json", "torchserve_handler.py", "model-config.yaml",
                     "handler/engine.py", "model/model_index.json"):
        assert required in names, (required, sorted(names)[:20])
    assert any(n.startswith("model/unet/") and n.endswith(".safetensors") for n in names)


def test_archive_of_a_missing_model_exits_3(tmp_path):
    assert run_script("build_archive.py", "--model-dir", str(tmp_path), "--store", str(tmp_path)).returncode == 3


@pytest.mark.parametrize("profile, download", [("sdxl-turbo", "make model MODEL=sdxl-turbo FP16_FIX_VAE=1"),
                                               ("sd-turbo", "make model MODEL=sd-turbo")])
def test_a_missing_model_names_the_download_of_the_model_make_mar_was_given(tmp_path, profile, download):
    """Issue 35: `make mar MODEL=sdxl-turbo` without the model said to run plain `make model` (SD-turbo's)."""
    result = run_script("build_archive.py", "--model-dir", str(tmp_path / "models" / profile), "--store",
                        str(tmp_path / "store"), "--profile", profile)
    assert result.returncode == 3 and f"`{download}`" in result.stderr, result.stderr


def test_archive_workers_override(tmp_path, tiny_sd_dir):
    import yaml

    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--workers", "2")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "sdturbo" / "model-config.yaml").read_text())
    assert config["minWorkers"] == config["maxWorkers"] == 2
    shipped = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())
    rest = lambda values: {k: v for k, v in values.items() if k not in ("minWorkers", "maxWorkers")}  # noqa: E731
    assert rest(config) == rest(shipped)  # the rest of the shipped config is kept


@pytest.mark.parametrize("fmt, expected", [("no-archive", "sdturbo"), ("zip-store", "sdturbo.mar")])
def test_archive_is_readable_by_every_user(tmp_path, tiny_sd_dir, fmt, expected):
    # The model builder leaves 0600 weights; the container's uid 1000 must still read what it is given.
    assert any(not p.stat().st_mode & 0o004 for p in tiny_sd_dir.rglob("*.safetensors")), "nothing to prove"
    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    target = tmp_path / expected
    for path in [target, *target.rglob("*")]:
        wanted = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & wanted == wanted, f"{path}: {path.stat().st_mode:o}"


def test_sdxl_profile_is_packed_into_the_archive_s_model_config(tmp_path, tiny_sdxl_dir):
    """`make mar MODEL=sdxl-turbo`: the profile's TorchServe and handler keys (handler/profiles.yaml) land in
    the archive's model-config.yaml over the shipped one, whose other keys stay."""
    import yaml

    result = run_script("build_archive.py", "--model-dir", str(tiny_sdxl_dir), "--store", str(tmp_path),
                        "--profile", "sdxl-turbo")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((tmp_path / "sdturbo" / "model-config.yaml").read_text())
    shipped = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())
    profile = yaml.safe_load((REPO / "handler" / "profiles.yaml").read_text())["sdxl-turbo"]["model_config"]
    assert config["handler"] == {**(shipped["handler"] or {}), **profile["handler"]}
    assert config["handler"]["max_gpu_memory_gib"] == 14 and config["handler"]["cuda_graphs"] is False
    assert {k: v for k, v in config.items() if k != "handler"} == {
        **{k: v for k, v in shipped.items() if k != "handler"}, **{k: v for k, v in profile.items() if k != "handler"}}


def test_sd_turbo_profile_leaves_the_shipped_model_config_as_it_is(tmp_path, tiny_sd_dir):
    """`make mar` (MODEL=sd-turbo) packs the shipped model-config.yaml unchanged: SD-turbo's T4 sizing is
    the endpoint's alone (its archive also serves CPUs and larger GPUs)."""
    result = run_script("build_archive.py", "--model-dir", str(tiny_sd_dir), "--store", str(tmp_path),
                        "--profile", "sd-turbo")
    assert result.returncode == 0, result.stderr
    packed = (tmp_path / "sdturbo" / "model-config.yaml").read_text()
    assert packed == (REPO / "handler" / "model-config.yaml").read_text()


@pytest.mark.parametrize("model", ["sd-turbo", "sdxl-turbo"])
def test_make_mar_packs_the_model_s_profile(model):
    result = subprocess.run(["make", "-n", "mar", f"MODEL={model}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"--profile {model}" in result.stdout, result.stdout
