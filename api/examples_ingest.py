"""The OpenAPI description of the ingest routes (``/v1/logs``, ``/ingest/{topic}``): bodies,
answers and examples. Kept apart from ``api/examples.py`` (the native routes) so each stays
short; the limits quoted come from the settings."""

from __future__ import annotations

from typing import Any

import orjson

from aggregator.otlp_wire import JSON, PROTOBUF
from aggregator.settings import Settings
from api.examples import (
    AUTH_RESPONSES,
    RETRY_AFTER_HEADER,
    field_error,
    json_examples,
    problem_response,
    publish_responses,
)
from api.schemas import ValidationProblem
from api.schemas_otlp import BINARY, EXPORT_RESPONSE, OTLP_JSON_REQUEST, STATUS

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


FLUENT_BIT_RECORD = {"date": 1795514400.123456, "log": "GET /health 200", "stream": "stdout"}
VECTOR_RECORD = {
    "host": "web-1",
    "message": "user signed in",
    "source_type": "file",
    "file": "/var/log/app.log",
    "timestamp": "2026-11-24T10:00:00.123456789Z",
}


def ingest_request_body(settings: Settings) -> dict[str, Any]:
    lines = "\n".join(orjson.dumps(r).decode() for r in (FLUENT_BIT_RECORD, VECTOR_RECORD))
    return {
        "required": True,
        "description": f"1 to {settings.max_batch} JSON objects, one per line (NDJSON) or as"
        " an array; gzip allowed",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON object per line"},
                "examples": {"fluent_bit_json_lines": {"value": lines}},
            },
            JSON: {
                "schema": {
                    "oneOf": [
                        {
                            "type": "array",
                            "items": {"type": "object"},
                            "minItems": 1,
                            "maxItems": settings.max_batch,
                        },
                        {"type": "object", "description": "one record"},
                    ]
                },
                "examples": {
                    "fluent_bit_json": {"value": [FLUENT_BIT_RECORD]},
                    "vector_json": {"value": [VECTOR_RECORD]},
                },
            },
        },
    }


def ingest_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    """/publish's answers, with 400 naming the record refused."""
    responses = publish_responses(settings)
    responses[400] = problem_response(
        "a record that cannot be an event (the first one is named), a body that is not JSON,"
        " or broken gzip: nothing was published",
        not_an_object={"detail": "line 3: a record must be a JSON object, not array"},
        bad_time={
            "detail": "line 7: the time field 'date': timestamp must include a timezone"
            " (e.g. 'Z' or '+02:00')"
        },
    )
    responses[413]["content"][JSON]["examples"]["event_too_large"] = {
        "value": {
            "detail": f"line 12 is 2000000 bytes as an event; the limit is"
            f" {settings.max_event_bytes} (AGG_MAX_EVENT_BYTES)"
        }
    }
    responses[415] = problem_response(
        "neither NDJSON nor JSON, or an encoding but gzip",
        media={"detail": "content-type must be application/x-ndjson or application/json"},
    )
    responses[422] = {
        "model": ValidationProblem,
        "description": "the topic in the path, or a query parameter, is not valid",
        "content": json_examples(
            topic={
                "detail": [
                    field_error(
                        ["path", "topic"],
                        "String should match pattern '^[A-Za-z0-9._-]+$'",
                        "string_pattern_mismatch",
                    )
                ]
            }
        ),
    }
    return responses
