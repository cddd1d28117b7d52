#!/usr/bin/env python3
"""Upload the model archive folder to S3 as the model data SageMaker copies into /opt/ml/model.

The Terraform stack reads it as an uncompressed S3Prefix (``model_data_uri``): the folder's files are
uploaded as they are, under that prefix, with boto3's transfer manager (multipart, parallel), a
progress bar, a SHA-256 checksum that S3 verifies on receipt, and a check of every object afterwards.

  publish.py model-store/sdturbo --from-terraform infra/
  publish.py model-store/sdturbo --bucket my-artifacts --prefix models/sdturbo/v2/ --dry-run

Credentials come from the standard AWS chain (environment, profile, SSO, instance role).
Exit codes: 0 published (or dry run), 1 upload or verification failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from terraform_outputs import OutputsError, split_s3_uri, terraform_outputs  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MIB = 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_upload(source: Path, prefix: str) -> list[tuple[Path, str]]:
    """(local file, S3 key) for every file under ``source``, in a stable order."""
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return [(path, prefix + path.relative_to(source).as_posix()) for path in files]


def upload(client, bucket: str, items: list[tuple[Path, str]], workers: int) -> list[str]:
    """Upload with the transfer manager; returns the keys whose check failed."""
    from boto3.s3.transfer import TransferConfig
    from tqdm import tqdm

    config = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB, max_concurrency=workers)
    total = sum(path.stat().st_size for path, _ in items)
    problems = []
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload") as bar:
        for path, key in items:
            digest = sha256_of(path)
            client.upload_file(
                str(path), bucket, key, Config=config, Callback=bar.update,
                ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": digest}},
            )
            head = client.head_object(Bucket=bucket, Key=key)
            if head["ContentLength"] != path.stat().st_size or head.get("Metadata", {}).get("sha256") != digest:
                problems.append(key)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="archive folder (make mar: model-store/sdturbo)")
    parser.add_argument("--from-terraform", type=Path, metavar="PATH",
                        help="infra/ (runs terraform output) or a saved `terraform output -json` file")
    parser.add_argument("--bucket", help="artifacts bucket (default: from --from-terraform)")
    parser.add_argument("--prefix", help="key prefix ending in / (default: from --from-terraform)")
    parser.add_argument("--region", help="AWS region (default: from --from-terraform or the AWS config)")
    parser.add_argument("--workers", type=int, default=8, help="parallel part uploads (default: 8)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; upload nothing")
    args = parser.parse_args(argv)

    if not (args.source / "MAR-INF" / "MANIFEST.json").is_file():
        print(f"error: {args.source} is not an archive folder (no MAR-INF/MANIFEST.json); build it with "
              "`make mar`", file=sys.stderr)
        return EXIT_USAGE
    bucket, prefix, region = args.bucket, args.prefix, args.region
    if args.from_terraform:
        try:
            outputs = terraform_outputs(args.from_terraform)
            uri_bucket, uri_prefix = split_s3_uri(str(outputs["model_data_uri"]))
        except (OutputsError, KeyError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        bucket, prefix = bucket or uri_bucket, prefix or uri_prefix
        region = region or outputs.get("region")
    if not bucket or prefix is None:
        print("error: give --bucket and --prefix, or --from-terraform", file=sys.stderr)
        return EXIT_USAGE
    if prefix and not prefix.endswith("/"):
        prefix += "/"

    items = plan_upload(args.source, prefix)
    size = sum(path.stat().st_size for path, _ in items)
    print(f"{len(items)} files, {size / MIB:.1f} MiB -> s3://{bucket}/{prefix}")
    if args.dry_run:
        for path, key in items:
            print(f"  {path} -> s3://{bucket}/{key}")
        return EXIT_OK

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", region_name=region)
    try:
        problems = upload(client, bucket, items, args.workers)
    except (BotoCoreError, ClientError) as exc:
        print(f"error: upload failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if problems:
        print(f"error: {len(problems)} object(s) failed verification: {', '.join(problems[:5])}", file=sys.stderr)
        return EXIT_FAILED
    print(f"published s3://{bucket}/{prefix} ({len(items)} files verified)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
