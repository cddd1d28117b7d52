"""Run a Python script with every AWS API call it makes recorded, to hold them against an IAM policy.

  python tests/support/aws_calls.py LOG scripts/invoke.py async "a cat" --from-terraform infra

The script runs unmodified in this process (``runpy``) after botocore's ``BaseClient._make_api_call`` is
wrapped: each call appends one JSON line to LOG with the service (botocore's service id, as in
Terraform's trace: "S3", "SageMaker Runtime"), the operation, its parameters (bytes left out) and the
error code AWS answered, if any. :func:`operations` turns them into the ``Operation`` records that
``tests/support/iam_policy.py`` evaluates.
"""

from __future__ import annotations

import json
import runpy
import sys
import urllib.parse
from pathlib import Path

MISSING = {"NoSuchKey", "404", "NotFound"}


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items() if not isinstance(item, (bytes, bytearray))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def record(log: Path) -> None:
    """From now on, append every API call of every botocore client in this process to ``log``."""
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    send = BaseClient._make_api_call

    def recorded(self, operation_name, api_params):
        entry = {"service": str(self.meta.service_model.service_id), "operation": operation_name,
                 "params": _jsonable(api_params), "error": None}
        try:
            return send(self, operation_name, api_params)
        except ClientError as exc:
            entry["error"] = exc.response.get("Error", {}).get("Code")
            raise
        finally:
            with open(log, "a") as out:
                out.write(json.dumps(entry) + "\n")

    BaseClient._make_api_call = recorded


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def operations(entries: list[dict], origin: str) -> list:
    """The calls as ``Operation`` records, the way the IAM evaluator reads requests: S3 by bucket and key
    in the URL, other services by their parameters."""
    from tests.support.terraform_trace import Operation

    found = []
    for entry in entries:
        params = entry["params"]
        url = ""
        if entry["service"] == "S3":
            url = "https://s3.amazonaws.com/" + urllib.parse.quote(params.get("Bucket", ""))
            if params.get("Key"):
                url += "/" + urllib.parse.quote(params["Key"])
        found.append(Operation(entry["service"], entry["operation"], "", url, json.dumps(params), "", origin))
    return found


def missing_objects(entries: list[dict]) -> list[str]:
    """Buckets of the GETs answered "no such key": the caller saw a 404 (not a 403) only because it may
    list the bucket (S3's GetObject/HeadObject rule for a key that does not exist)."""
    return [entry["params"]["Bucket"] for entry in entries
            if entry["service"] == "S3" and entry["operation"] in ("GetObject", "HeadObject")
            and entry["error"] in MISSING]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: aws_calls.py LOG SCRIPT [ARGS...]")
    record(Path(argv[0]))
    sys.argv = argv[1:]
    runpy.run_path(argv[1], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
