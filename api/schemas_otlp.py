"""JSON Schemas of OTLP/HTTP logs for the OpenAPI document: the OTLP/JSON request (loose, as
the protocol wants unknown fields ignored), the response, and the ``Status`` of a failure.
Protobuf bodies are documented as binary: their schema is the .proto, not JSON Schema."""

from __future__ import annotations

from typing import Any

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}
UINT64: dict[str, Any] = {
    "description": "nanoseconds since 1970: a decimal string, or a number",
    "anyOf": [{"type": "string", "pattern": "^[0-9]{1,20}$"}, {"type": "integer", "minimum": 0}],
}
ANY_VALUE: dict[str, Any] = {
    "type": "object",
    "description": "one of stringValue, boolValue, intValue, doubleValue, bytesValue (base64),"
    " arrayValue {values}, kvlistValue {values}",
}
KEY_VALUES: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": ANY_VALUE},
        "required": ["key"],
    },
}
LOG_RECORD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "timeUnixNano": UINT64,
        "observedTimeUnixNano": UINT64,
        "severityNumber": {"type": "integer", "minimum": 0, "maximum": 24},
        "severityText": {"type": "string"},
        "body": ANY_VALUE,
        "attributes": KEY_VALUES,
        "flags": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "traceId": {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$", "description": "hex"},
        "spanId": {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$", "description": "hex"},
        "eventName": {"type": "string"},
    },
}
OTLP_JSON_REQUEST: dict[str, Any] = {
    "title": "ExportLogsServiceRequest",
    "description": "OTLP/JSON: the proto3 JSON mapping with lowerCamelCase names, hex trace and"
    " span ids, integer enums and 64-bit integers as strings (or numbers). Fields this"
    " receiver does not know are ignored, as the OTLP specification requires.",
    "type": "object",
    "properties": {
        "resourceLogs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "resource": {"type": "object", "properties": {"attributes": KEY_VALUES}},
                    "scopeLogs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "scope": {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "version": {"type": "string"},
                                        "attributes": KEY_VALUES,
                                    },
                                },
                                "logRecords": {"type": "array", "items": LOG_RECORD},
                            },
                        },
                    },
                },
            },
        }
    },
}
EXPORT_RESPONSE: dict[str, Any] = {
    "title": "ExportLogsServiceResponse",
    "type": "object",
    "properties": {
        "partialSuccess": {
            "type": "object",
            "properties": {
                "rejectedLogRecords": {"type": "string", "pattern": "^[0-9]+$"},
                "errorMessage": {"type": "string"},
            },
            "required": ["rejectedLogRecords"],
        }
    },
    "additionalProperties": False,
}
STATUS: dict[str, Any] = {
    "title": "Status",
    "description": "google.rpc.Status: `code` is the gRPC code, `message` says what is wrong",
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["code", "message"],
    "additionalProperties": False,
}
