"""CloudWatch embedded-metric-format (EMF) records as CloudWatch Logs reads them, checked against the format.

SCHEMA is this project's JSON Schema of the rules in AWS's "Specification: Embedded metric format"
(SPECIFICATION below): the root node is a JSON object with ``_aws``; ``_aws`` holds an integer ``Timestamp``
(epoch milliseconds) and ``CloudWatchMetrics``, an array of MetricDirectives, each with a ``Namespace``,
``Dimensions`` (an array of DimensionSets, arrays of at most 30 dimension keys) and ``Metrics`` (at most 100
MetricDefinitions, each a ``Name`` and an optional ``Unit`` from CloudWatch's MetricDatum units).
:func:`check` adds what a schema cannot say: every referenced dimension is a string member of the root
node, and every metric a number or an array of at most 100 numbers there.

A record counts only as a log event of its own: one stdout line that is exactly one JSON object. A line
that carries ``"_aws"`` after a prefix (TorchServe's worker log format) is no record at all, which
:func:`records` reports as an error rather than skip.
"""

from __future__ import annotations

import json

import jsonschema

SPECIFICATION = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html"
# MetricDatum's Unit values (CloudWatch API reference, MetricDatum).
UNITS = ("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
         "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
         "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
         "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None")
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "EMF root node",
    "type": "object",
    "required": ["_aws"],
    "properties": {"_aws": {
        "type": "object",
        "required": ["Timestamp", "CloudWatchMetrics"],
        "properties": {
            "Timestamp": {"type": "integer", "minimum": 0},
            "CloudWatchMetrics": {"type": "array", "items": {
                "type": "object",
                "required": ["Namespace", "Dimensions", "Metrics"],
                "properties": {
                    "Namespace": _NAME,
                    "Dimensions": {"type": "array", "minItems": 1,
                                   "items": {"type": "array", "maxItems": 30, "items": _NAME}},
                    "Metrics": {"type": "array", "maxItems": 100, "items": {
                        "type": "object", "required": ["Name"],
                        "properties": {"Name": _NAME, "Unit": {"enum": list(UNITS)}}}},
                },
            }},
        },
    }},
}
# A log event CloudWatch Logs takes, and what a pipe writes at once (so no other writer's line lands inside).
PIPE_BUF = 4096


class NotARecord(AssertionError):
    pass


def check(record: dict) -> None:
    """Raises NotARecord naming the first rule of the specification ``record`` breaks."""
    try:
        jsonschema.validate(record, SCHEMA)
    except jsonschema.ValidationError as exc:
        raise NotARecord(f"{exc.message} at {list(exc.absolute_path)}: {json.dumps(record)[:300]}") from None
    for directive in record["_aws"]["CloudWatchMetrics"]:
        for key in {key for dimension_set in directive["Dimensions"] for key in dimension_set}:
            if not isinstance(record.get(key), str):
                raise NotARecord(f"dimension {key!r} is not a string member of the root node")
        for metric in directive["Metrics"]:
            value = record.get(metric["Name"])
            numbers = value if isinstance(value, list) else [value]
            if not numbers or len(numbers) > 100 or not all(
                    isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
                raise NotARecord(f"metric {metric['Name']!r} is not a number (or up to 100 numbers): {value!r}")


def records(output: str) -> list[dict]:
    """Every EMF record of ``output`` (a process's standard output), each checked.

    Raises:
        NotARecord: a line mentions ``"_aws"`` but is not one whole JSON object, or breaks the format.
    """
    found = []
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise NotARecord(f"a line with an EMF document is not one whole JSON object: {line[:300]}") from None
        if not isinstance(record, dict):
            raise NotARecord(f"not a JSON object: {line[:300]}")
        if len(line.encode()) + 1 > PIPE_BUF:
            raise NotARecord(f"a record of {len(line.encode())} bytes may be interleaved with other output")
        check(record)
        found.append(record)
    return found


def metrics(record: dict) -> dict[str, float]:
    """A record's metrics by name, with their values."""
    return {metric["Name"]: record[metric["Name"]] for directive in record["_aws"]["CloudWatchMetrics"]
            for metric in directive["Metrics"]}


def events(found: list[dict], kind: str) -> list[dict]:
    """The records of one kind (the ``Event`` property: batch, worker-start, cold-start, minute)."""
    return [record for record in found if record.get("Event") == kind]
