"""Read the AWS operations out of a Terraform log written with ``TF_LOG_PROVIDER=DEBUG``.

The AWS provider (through aws-sdk-go-base) logs every HTTP request it sends as an ``HTTP Request Sent``
entry whose attributes name the service, the operation, the URL and the body. hclog writes one entry per
line, except that a value holding newlines becomes ``key=`` followed by lines starting with ``  | ``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ENTRY_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[(\w+)\] ", re.MULTILINE)
KEY = re.compile(r"\s*([@\w.]+)=")


@dataclass(frozen=True)
class Operation:
    """One AWS API call the provider sent."""

    service: str  # rpc.service, e.g. "SageMaker", "S3", "Application Auto Scaling"
    name: str  # rpc.method, e.g. "CreateModel"
    http_method: str
    url: str
    body: str
    rpc: str  # the Terraform RPC it served: ReadResource, ApplyResourceChange, ReadDataSource, ...
    resource_type: str  # tf_resource_type or tf_data_source_type; "" for provider set-up calls
    response: str = ""  # the body AWS answered with (the ids of what a request created)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """A Go-quoted string starting at ``text[start] == '"'``: (unescaped value, index after it)."""
    out, index = [], start + 1
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            nxt = text[index + 1]
            if nxt in escapes:
                out.append(escapes[nxt])
                index += 2
                continue
            if nxt in "xu":  # \xHH or \uHHHH
                width = 2 if nxt == "x" else 4
                out.append(chr(int(text[index + 2:index + 2 + width], 16)))
                index += 2 + width
                continue
        if char == '"':
            return "".join(out), index + 1
        out.append(char)
        index += 1
    return "".join(out), index


def parse_attributes(text: str) -> dict[str, str]:
    """hclog's ``key=value`` attributes (bare, quoted, bracketed or multi-line) of one entry."""
    attributes, index = {}, 0
    while True:
        match = KEY.match(text, index)
        if not match:
            next_key = re.search(r"\s([@\w.]+)=", text[index:])
            if not next_key:
                return attributes
            index += next_key.start()
            continue
        key, index = match.group(1), match.end()
        if text.startswith("\n", index):  # multi-line value: lines prefixed with "  | "
            lines = []
            index += 1
            while text.startswith("  | ", index) or text.startswith("  |\n", index):
                end = text.find("\n", index)
                end = len(text) if end < 0 else end
                lines.append(text[index + 4:end])
                index = end + 1
            attributes[key] = "\n".join(lines)
        elif text.startswith('"', index):
            attributes[key], index = _read_quoted(text, index)
        elif text.startswith("[", index):
            end = text.find("]", index)
            end = len(text) if end < 0 else end + 1
            attributes[key], index = text[index:end], end
        else:
            end = index
            while end < len(text) and not text[end].isspace():
                end += 1
            attributes[key], index = text[index:end], end


MESSAGE = re.compile(r"(?P<message>.*?):(?=\s|$)", re.DOTALL)


def entries(log: str) -> list[tuple[str, str]]:
    """(message, attribute text) of each log entry: ``<time> [LEVEL] <logger>: <message>: <attributes>``.

    The attributes may start on the next line (when the first one holds newlines)."""
    starts = [match.start() for match in ENTRY_START.finditer(log)] + [len(log)]
    found = []
    for begin, end in zip(starts, starts[1:], strict=False):
        entry = log[begin:end]
        logger_end = entry.find(": ", entry.find("] ") + 2)
        if logger_end < 0:
            continue
        message = MESSAGE.match(entry, logger_end + 2)
        if message is None:
            continue
        found.append((message.group("message"), entry[message.end() + 1:]))
    return found


def operations(log: str) -> list[Operation]:
    """Every AWS request the provider sent, in order, each with the body of its response. Requests of
    different resources interleave; one resource's requests (one ``tf_req_id``) are sent one at a time, so
    a response belongs to the last request of its ``tf_req_id`` and operation."""
    sent, pending = [], {}
    for message, text in entries(log):
        if message not in ("HTTP Request Sent", "HTTP Response Received"):
            continue
        attributes = parse_attributes(text)
        key = (attributes.get("tf_req_id") or attributes.get("tf_backend.req_id", ""), attributes.get("rpc.method", ""))
        if message == "HTTP Response Received":
            if key in pending:
                sent[pending.pop(key)]["response"] = attributes.get("http.response.body", "")
            continue
        pending[key] = len(sent)
        sent.append(dict(
            service=attributes.get("rpc.service", ""),
            name=attributes.get("rpc.method", ""),
            http_method=attributes.get("http.method", ""),
            url=attributes.get("http.url", ""),
            body=attributes.get("http.request.body", ""),
            rpc=attributes.get("tf_rpc", ""),
            resource_type=attributes.get("tf_resource_type", attributes.get("tf_data_source_type", "")),
        ))
    return [Operation(**fields) for fields in sent]


def read_operations(path: Path) -> list[Operation]:
    """The operations of one log file; refuses a log with a request the parser did not read."""
    if not path.exists():
        return []
    log = path.read_text(errors="replace")
    found = operations(log)
    sent = log.count("HTTP Request Sent")
    if len(found) != sent or any(not (op.service and op.name) for op in found):
        raise ValueError(f"{path}: read {len(found)} of {sent} requests, or one without a service and operation")
    return found
