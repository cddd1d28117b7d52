"""Reading the stack's Terraform outputs (sdturbo_ops/terraform.py): what the AWS CLIs show when terraform fails."""

from __future__ import annotations

import os

import pytest

from tests.helpers import free_port, run_script


ASYNC_BUCKET = "test-async"


ARTIFACTS_BUCKET = "test-artifacts"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto's S3 + SageMaker Runtime over HTTP on a free loopback port, with fake credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    for bucket in (ASYNC_BUCKET, ARTIFACTS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    yield {"url": url, "env": env, "s3": s3}
    server.stop()


def test_terraform_errors_are_shown_whole_and_without_colour(moto, tmp_path):
    stack = tmp_path / "infra"
    stack.mkdir()
    (stack / "main.tf").write_text('output "broken" {\n  value =\n}\n')
    result = run_script("invoke.py", "async", "a cat", "--from-terraform", str(stack), env=moto["env"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Error: Invalid expression" in result.stderr  # the head of terraform's diagnostic ...
    assert "Expected the start of an expression" in result.stderr  # ... and its end
    assert "\x1b[" not in result.stderr
