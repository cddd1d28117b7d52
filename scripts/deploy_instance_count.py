#!/usr/bin/env python3
"""Print the instance count a deploy should give the endpoint's new configuration (deploy_instance_count).

The endpoint's current desired count, so a deploy keeps what autoscaling chose; 1 for an endpoint at 0
or not created yet (sdturbo_ops/deploy.py says why). deploy-infrastructure's plan job runs this and
passes the number as TF_VAR_deploy_instance_count. It needs only boto3.

Exit codes: 0 printed, 1 AWS refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.deploy import VARIANT, deploy_count

EXIT_FAILED = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="SageMaker endpoint name (the stack's `name`)")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--variant", default=VARIANT, help=f"production variant (default: {VARIANT})")
    args = parser.parse_args(argv)
    if not args.endpoint:
        raise cli.CliError("--endpoint is empty", cli.EXIT_USAGE)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        count = deploy_count(boto3.client("sagemaker", region_name=args.region), args.endpoint, args.variant)
    except (BotoCoreError, ClientError) as exc:
        raise cli.CliError(f"cannot read endpoint {args.endpoint}: {exc}", EXIT_FAILED) from None
    print(count)
    return 0


if __name__ == "__main__":
    cli.run(main)
