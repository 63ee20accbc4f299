"""OTLP/HTTP logs on the wire: a request in, binary protobuf or OTLP's JSON; answers out.

The JSON encoding is the proto3 JSON mapping with OTLP's deviations (the OTLP specification,
"JSON Protobuf Encoding"): ``traceId`` and ``spanId`` are hex, not base64; 64-bit integers may be
strings or numbers; fields with unknown names are ignored. Both encodings become the same
``ExportLogsServiceRequest``, unknown fields dropped, so a record hashes the same whichever way
it came (:mod:`aggregator.otlp`).

Answers use the request's encoding (the spec requires it): an ``ExportLogsServiceResponse`` on
success, a ``google.rpc.Status`` for a 4xx or 5xx. Status is three fields, written here by hand
rather than pulling in googleapis-common-protos for them.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from aggregator.errors import InvalidBody
from aggregator.logs import one_line

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)
# Nesting the protobuf decoder accepts, in messages (upb's default; json_format's the same).
# A body or attribute value of maps in maps costs three messages a level, so about 32 levels.
MAX_MESSAGE_DEPTH = 100
# The part of a reason an answer repeats; the spec asks answers to stay small (4 MiB at most).
MAX_MESSAGE_CHARS = 1000

# gRPC status codes for the Status.code field (the spec does not use it; clients may log it).
_GRPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    408: 4,  # DEADLINE_EXCEEDED
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,  # INVALID_ARGUMENT
    429: 8,  # RESOURCE_EXHAUSTED
    503: 14,  # UNAVAILABLE
}
_UNKNOWN = 2


def decode_request(body: bytes, media_type: str) -> ExportLogsServiceRequest:
    """The request in ``body``; :class:`InvalidBody` (a 400, "bad data") if it is not one."""
    request = _from_json(body) if media_type == JSON else _from_protobuf(body)
    # What this receiver does not know cannot matter to it, and must not change a hash.
    request.DiscardUnknownFields()
    return request


def _from_protobuf(body: bytes) -> ExportLogsServiceRequest:
    try:
        return ExportLogsServiceRequest.FromString(body)
    except DecodeError as exc:
        raise InvalidBody(_bad(f"not a protobuf ExportLogsServiceRequest: {exc}")) from None


def _from_json(body: bytes) -> ExportLogsServiceRequest:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(_bad(f"body is not valid JSON: {exc}")) from None
    if not isinstance(document, dict):
        raise InvalidBody("an OTLP/JSON ExportLogsServiceRequest is a JSON object")
    for record in _log_records(document):
        for key in ("traceId", "spanId", "trace_id", "span_id"):
            if isinstance(record.get(key), str):
                record[key] = _hex_as_base64(record[key], key)
    try:
        return json_format.ParseDict(
            document,
            ExportLogsServiceRequest(),
            ignore_unknown_fields=True,
            max_recursion_depth=MAX_MESSAGE_DEPTH,
        )
    except (json_format.ParseError, RecursionError) as exc:
        raise InvalidBody(_bad(f"not an OTLP/JSON ExportLogsServiceRequest: {exc}")) from None


def _log_records(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every log record object of an OTLP/JSON document; what is not shaped like one is left
    for the protobuf parser to refuse."""
    found = []
    for resource_logs in _members(document, "resourceLogs", "resource_logs"):
        for scope_logs in _members(resource_logs, "scopeLogs", "scope_logs"):
            found += _members(scope_logs, "logRecords", "log_records")
    return found


def _members(parent: object, *keys: str) -> list[dict[str, Any]]:
    if not isinstance(parent, dict):
        return []
    return [
        item
        for key in keys
        if isinstance(parent.get(key), list)
        for item in parent[key]
        if isinstance(item, dict)
    ]


def _hex_as_base64(text: str, key: str) -> str:
    """OTLP/JSON's hex id as the base64 the proto3 JSON parser reads for bytes."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidBody(_bad(f"{key} {text[:40]!r} is not hex")) from None
    return base64.b64encode(raw).decode()


def _bad(reason: str) -> str:
    return one_line(reason)[:MAX_MESSAGE_CHARS]


def encode_response(media_type: str, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportLogsServiceResponse``; ``partial_success`` set only when records were
    refused (the spec: unset on full success)."""
    message = message[:MAX_MESSAGE_CHARS]
    if media_type == JSON:
        if not rejected:
            return b"{}"
        # proto3 JSON: lowerCamelCase names, 64-bit integers as strings.
        partial = {"rejectedLogRecords": str(rejected), "errorMessage": message}
        return orjson.dumps({"partialSuccess": partial})
    if not rejected:
        return ExportLogsServiceResponse().SerializeToString()
    partial_success = ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
    return ExportLogsServiceResponse(partial_success=partial_success).SerializeToString()


def encode_status(media_type: str, http_status: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (code, message) for a refusal with ``http_status``."""
    code = _GRPC_CODES.get(http_status, _UNKNOWN)
    message = message[:MAX_MESSAGE_CHARS]
    if media_type == JSON:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    # Field 1 (code): varint, tag 0x08; field 2 (message): length-delimited, tag 0x12.
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
