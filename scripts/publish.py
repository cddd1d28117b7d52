#!/usr/bin/env python3
"""Upload the model archive folder to S3 as the model data SageMaker copies into /opt/ml/model.

The Terraform stack reads it as an uncompressed S3Prefix (``model_data_uri``): the folder's files are
uploaded as they are, under that prefix, multipart and in parallel, with a progress bar, a SHA-256
checksum that S3 verifies on receipt, and a check of every object afterwards.

  publish.py model-store/sdturbo --from-terraform infra/
  publish.py model-store/sdturbo --bucket my-artifacts --prefix models/sdturbo/v2/ --dry-run

Credentials come from the standard AWS chain (environment, profile, SSO, instance role).
Exit codes: 0 published (or dry run), 1 upload or verification failed, 2 bad usage.
"""

from __future__ import annotations

import argparse

from sdturbo_ops import cli
from sdturbo_ops.publish import MIB, plan_upload, upload
from sdturbo_ops.terraform import OutputsError, split_s3_uri, terraform_outputs

EXIT_FAILED = 1


def destination(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(bucket, prefix ending in /, region) from the flags, then the Terraform outputs."""
    bucket, prefix, region = args.bucket, args.prefix, args.region
    if args.from_terraform:
        try:
            outputs = terraform_outputs(args.from_terraform)
            uri_bucket, uri_prefix = split_s3_uri(str(outputs["model_data_uri"]))
        except (OutputsError, KeyError, ValueError) as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from None
        bucket, prefix = bucket or uri_bucket, prefix or uri_prefix
        region = region or outputs.get("region")
    if not bucket or prefix is None:
        raise cli.CliError("give --bucket and --prefix, or --from-terraform", cli.EXIT_USAGE)
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/", region


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=cli.absolute_path, help="archive folder (make mar: model-store/sdturbo)")
    parser.add_argument("--from-terraform", type=cli.absolute_path, metavar="PATH",
                        help="infra/ (runs terraform output) or a saved `terraform output -json` file")
    parser.add_argument("--bucket", help="artifacts bucket (default: from --from-terraform)")
    parser.add_argument("--prefix", help="key prefix ending in / (default: from --from-terraform)")
    parser.add_argument("--region", help="AWS region (default: from --from-terraform or the AWS config)")
    parser.add_argument("--workers", type=int, default=8, help="parallel part uploads (default: 8)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    args = parser.parse_args(argv)

    if not (args.source / "MAR-INF" / "MANIFEST.json").is_file():
        raise cli.CliError(f"{args.source} is not an archive folder (no MAR-INF/MANIFEST.json); build it with "
                           "`make mar`", cli.EXIT_USAGE)
    bucket, prefix, region = destination(args)
    items = plan_upload(args.source, prefix)
    total = sum(path.stat().st_size for path, _ in items)
    print(f"{len(items)} files, {total / MIB:.1f} MiB -> s3://{bucket}/{prefix}")
    if args.dry_run:
        for path, key in items:
            print(f"  {path} -> s3://{bucket}/{key}")
        return 0

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from tqdm import tqdm

    try:
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload") as bar:
            problems = upload(boto3.client("s3", region_name=region), bucket, items, args.workers, bar.update)
    except (BotoCoreError, ClientError) as exc:
        raise cli.CliError(f"upload failed: {exc}", EXIT_FAILED) from None
    if problems:
        raise cli.CliError(f"{len(problems)} object(s) failed verification: {', '.join(problems[:5])}", EXIT_FAILED)
    print(f"published s3://{bucket}/{prefix} ({len(items)} files verified)")
    return 0


if __name__ == "__main__":
    cli.run(main)
