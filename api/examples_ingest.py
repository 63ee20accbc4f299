"""The OpenAPI description of the ingest routes (``/v1/logs``, ``/ingest/{topic}``): bodies,
answers and examples. Kept apart from ``api/examples.py`` (the native routes) so each stays
short; the limits quoted come from the settings."""

from __future__ import annotations

from typing import Any

from aggregator.otlp_wire import JSON, PROTOBUF
from aggregator.settings import Settings
from api.examples import AUTH_RESPONSES, RETRY_AFTER_HEADER, json_examples

BINARY = {"type": "string", "format": "binary"}
UINT64 = {
    "description": "nanoseconds since 1970: a decimal string, or a number",
    "anyOf": [{"type": "string", "pattern": "^[0-9]{1,20}$"}, {"type": "integer", "minimum": 0}],
}
ANY_VALUE = {
    "type": "object",
    "description": "one of stringValue, boolValue, intValue, doubleValue, bytesValue (base64),"
    " arrayValue {values}, kvlistValue {values}",
}
KEY_VALUES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"key": {"type": "string"}, "value": ANY_VALUE},
        "required": ["key"],
    },
}
LOG_RECORD = {
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
OTLP_JSON_REQUEST = {
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
OTLP_JSON_EXAMPLE = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "service.instance.id", "value": {"stringValue": "pod-7"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "app.payments", "version": "2.1.0"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1795514400123456789",
                            "severityNumber": 13,
                            "severityText": "WARNING",
                            "body": {"stringValue": "card declined"},
                            "attributes": [{"key": "order.id", "value": {"intValue": "1042"}}],
                            "traceId": "0af7651916cd43dd8448eb211c80319c",
                            "spanId": "b7ad6b7169203331",
                            "flags": 1,
                        }
                    ],
                }
            ],
        }
    ]
}
EXPORT_RESPONSE = {
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
STATUS = {
    "title": "Status",
    "description": "google.rpc.Status: `code` is the gRPC code, `message` says what is wrong",
    "type": "object",
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["code", "message"],
    "additionalProperties": False,
}


def otlp_request_body() -> dict[str, Any]:
    return {
        "required": True,
        "description": "an ExportLogsServiceRequest, binary protobuf or OTLP/JSON; gzip allowed",
        "content": {
            PROTOBUF: {"schema": BINARY},
            JSON: {
                "schema": OTLP_JSON_REQUEST,
                "examples": {"one_record": {"value": OTLP_JSON_EXAMPLE}},
            },
        },
    }


def _status(description: str, code: int, **examples: str) -> dict[str, Any]:
    """An OTLP failure: a Status (``code``: the gRPC code) in the request's encoding."""
    values = {name: {"code": code, "message": text} for name, text in examples.items()}
    content = json_examples(**values)
    content[JSON]["schema"] = STATUS
    return {"description": description, "content": {**content, PROTOBUF: {"schema": BINARY}}}


def otlp_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    auth: dict[int | str, dict[str, Any]] = {
        401: {
            **_status(AUTH_RESPONSES[401]["description"], 16, unknown="unknown API key"),
            "headers": AUTH_RESPONSES[401]["headers"],
        },
        403: _status(
            AUTH_RESPONSES[403]["description"],
            7,
            topic="the key 'billing' may not publish to topic 'checkout'",
        ),
    }
    ok = json_examples(
        accepted={},
        partial={
            "partialSuccess": {
                "rejectedLogRecords": "1",
                "errorMessage": "1 of 40 log records refused: log record 7 is 1200000 bytes as an"
                f" event; the limit is {settings.max_event_bytes} (AGG_MAX_EVENT_BYTES)",
            }
        },
    )
    ok[JSON]["schema"] = EXPORT_RESPONSE
    retryable = {"headers": RETRY_AFTER_HEADER}
    return {
        200: {
            "description": "every record published (confirmed by the broker), or the records"
            " refused counted in partialSuccess: the exporter must not retry",
            "content": {**ok, PROTOBUF: {"schema": BINARY}},
        },
        400: _status(
            "bad data (not an ExportLogsServiceRequest, broken gzip): not retried",
            3,
            not_otlp="not a protobuf ExportLogsServiceRequest: Error parsing message",
        ),
        **auth,
        408: _status("the body did not arrive in time", 4, slow="the body did not arrive in time"),
        413: _status(
            f"more than {settings.max_batch} records, or a body over {settings.max_body_bytes}"
            " bytes (decompressed)",
            8,
            too_large=f"the body is larger than {settings.max_body_bytes} bytes once decompressed",
        ),
        415: _status(
            "neither application/x-protobuf nor application/json, or an encoding but gzip",
            3,
            media="content-type must be application/x-protobuf or application/json (OTLP/HTTP)",
        ),
        429: {
            **_status("past AGG_RATE_LIMIT: retried after Retry-After", 8, rate="past 1000/s"),
            **retryable,
        },
        503: {
            **_status(
                "the broker does not hold the records: retried after Retry-After",
                14,
                not_connected="not connected to the broker",
            ),
            **retryable,
        },
    }
