"""The instance count a deploy gives the endpoint (sdturbo_ops/deploy.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from sdturbo_ops.deploy import deploy_count


class SageMaker:
    def __init__(self, described=None, error=None):
        self.described, self.error = described, error

    def describe_endpoint(self, EndpointName):  # noqa: N803  (boto3's spelling)
        if self.error:
            raise ClientError({"Error": self.error}, "DescribeEndpoint")
        return self.described


@pytest.mark.parametrize("variants, expected", [
    ([{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}], 3),  # what autoscaling reached stays
    ([{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}], 1),  # scaled to zero: at least one
    ([{"VariantName": "Other", "DesiredInstanceCount": 5}], 1),
    ([], 1),
])
def test_the_running_count_is_kept(variants, expected):
    assert deploy_count(SageMaker({"ProductionVariants": variants}), "sdturbo") == expected


def test_a_new_endpoint_starts_with_one():
    missing = {"Code": "ValidationException", "Message": "Could not find endpoint \"sdturbo\"."}
    assert deploy_count(SageMaker(error=missing), "sdturbo") == 1


def test_other_errors_are_not_hidden():
    with pytest.raises(ClientError):
        deploy_count(SageMaker(error={"Code": "AccessDeniedException", "Message": "no"}), "sdturbo")
