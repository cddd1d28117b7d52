#!/usr/bin/env python3
"""Print the instance count a deploy should give the endpoint's new configuration (deploy_instance_count).

A deploy creates a new endpoint configuration, and UpdateEndpoint replaces the variant's instance count
with that configuration's initial count (the Terraform provider cannot ask it to keep the current one).
Passing the current DesiredInstanceCount keeps what autoscaling chose: a deploy under load stays at 2.
An endpoint at 0, or not created yet, gets 1: a variant starts with at least one instance, which then
runs until target tracking scales it in (about 15 minutes without a backlog).

deploy-infrastructure's plan job runs this and passes the number as TF_VAR_deploy_instance_count.

Exit codes: 0 printed, 1 AWS refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="SageMaker endpoint name (the stack's `name`)")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--variant", default=VARIANT, help=f"production variant (default: {VARIANT})")
    args = parser.parse_args(argv)
    if not args.endpoint:
        print("error: --endpoint is empty", file=sys.stderr)
        return EXIT_USAGE

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        count = deploy_count(boto3.client("sagemaker", region_name=args.region), args.endpoint, args.variant)
    except (BotoCoreError, ClientError) as exc:
        print(f"error: cannot read endpoint {args.endpoint}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(count)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
