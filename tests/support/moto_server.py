"""moto in server mode, on loopback: S3 and SageMaker Runtime over real HTTP for the AWS clients' tests."""

from __future__ import annotations

import os

import pytest

from tests.support.helpers import free_port

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
