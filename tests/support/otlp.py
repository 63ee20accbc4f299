"""OTLP log requests for the tests: built as messages, sent as protobuf or as OTLP/JSON."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_ID = bytes.fromhex("b7ad6b7169203331")
# 2026-11-24T10:00:00.123456789Z
TIME_NS = 1_795_514_400_123_456_789


def value(python: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (dicts become key-value lists, None an empty value)."""
    if python is None:
        return AnyValue()
    if isinstance(python, bool):
        return AnyValue(bool_value=python)
    if isinstance(python, int):
        return AnyValue(int_value=python)
    if isinstance(python, float):
        return AnyValue(double_value=python)
    if isinstance(python, str):
        return AnyValue(string_value=python)
    if isinstance(python, bytes):
        return AnyValue(bytes_value=python)
    if isinstance(python, list):
        return AnyValue(array_value=ArrayValue(values=[value(item) for item in python]))
    if isinstance(python, dict):
        return AnyValue(kvlist_value=KeyValueList(values=pairs(python)))
    raise TypeError(python)


def pairs(mapping: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=value(item)) for key, item in mapping.items()]


def record(
    body: Any = "user signed in",
    *,
    time_ns: int = TIME_NS,
    observed_ns: int = 0,
    severity: tuple[str, int] = ("INFO", 9),
    attributes: dict[str, Any] | None = None,
    trace: bool = True,
    **fields: Any,
) -> LogRecord:
    made = LogRecord(
        time_unix_nano=time_ns,
        observed_time_unix_nano=observed_ns,
        severity_text=severity[0],
        severity_number=severity[1],  # type: ignore[arg-type]
        attributes=pairs(attributes if attributes is not None else {"user.id": 42}),
        **fields,
    )
    if body is not None:
        made.body.CopyFrom(value(body))
    if trace:
        made.trace_id, made.span_id, made.flags = TRACE_ID, SPAN_ID, 1
    return made


def request(
    *records: LogRecord,
    resource: dict[str, Any] | None = None,
    scope: tuple[str, str] = ("app.auth", "1.4.0"),
) -> ExportLogsServiceRequest:
    attributes = resource if resource is not None else {"service.name": "checkout"}
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=pairs(attributes)),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name=scope[0], version=scope[1]),
                        log_records=list(records or [record()]),
                    )
                ],
            )
        ]
    )


def as_json(message: ExportLogsServiceRequest) -> bytes:
    """OTLP/JSON as a client writes it: lowerCamelCase, integer enums, hex trace and span ids."""
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_logs in document.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for log_record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in log_record:
                        log_record[key] = base64.b64decode(log_record[key]).hex().upper()
    return orjson.dumps(document)
