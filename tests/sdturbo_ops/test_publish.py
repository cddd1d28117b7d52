"""Publishing an archive as SageMaker's model data (sdturbo_ops/publish.py, scripts/publish.py), against a real
HTTP S3 emulator (moto in server mode, on loopback)."""

from __future__ import annotations

import json

from tests.support.moto_server import ARTIFACTS_BUCKET
from tests.support.helpers import build_archive, run_script


# ------------------------------------------------------------------ publish
def test_publish_uploads_every_file_intact(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    result = run_script("publish.py", str(archive), "--bucket", ARTIFACTS_BUCKET, "--prefix", "models/sdturbo/v1/",
                        env=moto["env"])
    assert result.returncode == 0, result.stderr
    local = {p.relative_to(archive).as_posix(): p for p in archive.rglob("*") if p.is_file()}
    listed = moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="models/sdturbo/v1/")["Contents"]
    remote = {o["Key"].removeprefix("models/sdturbo/v1/") for o in listed}
    assert remote == set(local)
    for name, path in local.items():
        body = moto["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=f"models/sdturbo/v1/{name}")["Body"].read()
        assert body == path.read_bytes(), name
    assert "MAR-INF/MANIFEST.json" in remote and any(n.endswith(".safetensors") for n in remote)


def test_publish_takes_the_location_from_terraform_outputs(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"model_data_uri": {"value": f"s3://{ARTIFACTS_BUCKET}/models/sdturbo/v9/"},
                                   "region": {"value": "us-east-1"}}))
    result = run_script("publish.py", str(archive), "--from-terraform", str(outputs), env=moto["env"])
    assert result.returncode == 0, result.stderr
    listed = moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="models/sdturbo/v9/")["Contents"]
    keys = [o["Key"] for o in listed]
    assert "models/sdturbo/v9/MAR-INF/MANIFEST.json" in keys


def test_publish_dry_run_uploads_nothing(moto, tmp_path, tiny_sd_dir):
    archive = build_archive(tiny_sd_dir, tmp_path / "store")
    result = run_script("publish.py", str(archive), "--bucket", ARTIFACTS_BUCKET, "--prefix", "dry/", "--dry-run",
                        env=moto["env"])
    assert result.returncode == 0 and "MAR-INF/MANIFEST.json" in result.stdout
    assert moto["s3"].list_objects_v2(Bucket=ARTIFACTS_BUCKET, Prefix="dry/").get("KeyCount", 0) == 0


def test_publish_refuses_a_folder_that_is_not_an_archive(moto, tmp_path):
    result = run_script("publish.py", str(tmp_path), "--bucket", ARTIFACTS_BUCKET, "--prefix", "x/", env=moto["env"])
    assert result.returncode == 2 and "make mar" in result.stderr
