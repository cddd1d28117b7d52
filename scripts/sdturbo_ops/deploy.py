"""The instance count a deploy should give the endpoint's new configuration.

A deploy creates a new endpoint configuration, and UpdateEndpoint replaces the variant's instance count
with that configuration's initial count (the Terraform provider cannot ask it to keep the current one).
Passing the current DesiredInstanceCount keeps what autoscaling chose: a deploy under load stays at 2.
An endpoint at 0, or not created yet, gets 1: a variant starts with at least one instance, which then
runs until target tracking scales it in (about 15 minutes without a backlog).
"""

from __future__ import annotations

VARIANT = "AllTraffic"  # infra/data.tf local.variant_name


def deploy_count(client, endpoint: str, variant: str = VARIANT) -> int:
    """The variant's desired instance count, at least 1; 1 when the endpoint does not exist."""
    from botocore.exceptions import ClientError

    try:
        described = client.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find endpoint" in error.get("Message", ""):
            return 1
        raise
    for summary in described.get("ProductionVariants", []):
        if summary.get("VariantName") == variant:
            return max(1, int(summary.get("DesiredInstanceCount") or 0))
    return 1
