"""The OpenAPI description of each route's answers: status codes, models and examples.

Kept apart from the routes, which only say what they do; the values quoted come from the
settings, so the document states the limits the running API applies.
"""

from __future__ import annotations

from typing import Any

import orjson

from aggregator.settings import Settings
from api.errors import RETRY_AFTER_S
from api.event_query import TIME_HELP
from api.schemas import Problem, Readiness, ValidationProblem

JSON = "application/json"

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before retrying the same request (the dedup makes it safe)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "examples": [int(RETRY_AFTER_S)]},
    }
}


def json_examples(**examples: Any) -> dict[str, Any]:
    """A response's ``content`` with named examples (FastAPI adds the model's schema)."""
    return {JSON: {"examples": {name: {"value": value} for name, value in examples.items()}}}


def field_error(loc: list[str | int], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_, **extra}


def problem_response(description: str, **examples: Any) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": json_examples(**examples)}


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        **problem_response(
            "no API key, or an unknown one (only when AGG_API_KEYS_FILE is set)",
            missing={"detail": "an API key is required: Authorization: Bearer <token>"},
        ),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    },
    403: problem_response(
        "the key lacks the scope, or may not publish to a topic of the request; nothing was "
        "published",
        scope={"detail": "the key 'reader' lacks the 'publish' scope"},
        topic={"detail": "the key 'billing' may not publish to topic 'auth.login'"},
    ),
}


def publish_responses(settings: Settings) -> dict[int | str, dict[str, Any]]:
    return {
        202: {"content": json_examples(accepted={"accepted": 2})},
        400: problem_response(
            "the body is not JSON",
            not_json={
                "detail": "body is not valid JSON: unexpected character, expected a "
                "string key: line 1 column 2 (char 1)"
            },
        ),
        **AUTH_RESPONSES,
        408: problem_response(
            "the body did not arrive in time (AGG_BODY_TIMEOUT_S)",
            slow={"detail": f"the body did not arrive within {settings.body_timeout_s:g}s"},
        ),
        413: problem_response(
            "too many events, too large a body, or too large an event; nothing was published",
            too_many_events={
                "detail": f"{settings.max_batch + 1} events in one request; "
                f"the limit is {settings.max_batch}"
            },
            body_too_large={"detail": f"the body is larger than {settings.max_body_bytes} bytes"},
            event_too_large={
                "detail": f"event 3 is 2000000 bytes as JSON; the limit is "
                f"{settings.max_event_bytes} (AGG_MAX_EVENT_BYTES)"
            },
        ),
        415: problem_response(
            "the content type is not JSON",
            not_json={"detail": "content-type must be application/json"},
        ),
        422: {
            "model": ValidationProblem,
            "description": "an event is invalid, or the batch is empty; nothing was published",
            "content": json_examples(
                invalid_event={
                    "detail": [
                        field_error(
                            ["body", "events", 1, "timestamp"],
                            "Value error, timestamp must include a timezone (e.g. 'Z' or '+02:00')",
                            "value_error",
                        ),
                        field_error(
                            ["body", "events", 3, "topic"],
                            "String should match pattern '^[A-Za-z0-9._-]+$'",
                            "string_pattern_mismatch",
                        ),
                    ]
                },
                empty_batch={"detail": [field_error(["body"], "the batch is empty", "too_short")]},
            ),
        },
        429: {
            **problem_response(
                "past AGG_RATE_LIMIT events per second for this key: retry after Retry-After",
                rate={"detail": "past 1000 events/s for 'billing'; retry in 1s"},
            ),
            "headers": RETRY_AFTER_HEADER,
        },
        503: {
            **problem_response(
                "the broker does not hold the events (unreachable, nack, unroutable, or no "
                "confirm in time), or too many requests in flight: retry after Retry-After",
                not_connected={"detail": "not connected to the broker"},
                no_confirm={
                    "detail": "the broker confirmed 2 of 3 event(s), then none for "
                    f"{settings.confirm_timeout_s:g}s"
                },
                unroutable={
                    "detail": "1 of 1 event(s) not confirmed: returned by the broker as "
                    "unroutable (no queue bound for the topic)"
                },
            ),
            "headers": RETRY_AFTER_HEADER,
        },
    }


def _unknown_parameter(name: str, takes: str) -> dict[str, Any]:
    return field_error(
        ["query", name],
        f"unknown query parameter; this route takes {takes}",
        "extra_forbidden",
        input="1",
    )


# Every GET route refuses a query parameter it does not take (api/strict_query.py). The schema
# is named, not given as a model: FastAPI would file a model under the route's own media type,
# text/plain for /metrics. (ValidationProblem is in the document through /events and /publish.)
UNKNOWN_PARAMETER_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "a query parameter this route does not take",
        "content": {
            JSON: {
                "schema": {"$ref": "#/components/schemas/ValidationProblem"},
                **json_examples(unknown_parameter={"detail": [_unknown_parameter("x", "none")]})[
                    JSON
                ],
            }
        },
    }
}

_EVENTS_PARAMETERS = "after, limit, order, q, since, source, topic, until"

_STORED = {
    "topic": "auth.login",
    "event_id": "e-1",
    "timestamp": "2026-11-24T10:00:00Z",
    "source": "svc-a",
    "payload": {"user": "alice"},
    "processed_at": "2026-11-24T10:00:00.123456Z",
    "publisher": None,
}

NDJSON_EXAMPLE = "".join(
    orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE).decode()
    for event in (_STORED, {**_STORED, "event_id": "e-2", "payload": {"user": "bob"}})
)

EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a page (JSON), or with `Accept: application/x-ndjson` every matching"
        " event, one JSON object (a `StoredEventOut`) per line",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one StoredEventOut per line"},
                "examples": {"two_events": {"value": NDJSON_EXAMPLE}},
            }
        },
    },
    **AUTH_RESPONSES,
    422: {
        "model": ValidationProblem,
        "description": "`limit` outside 1-1000 or not a number, `after` not a cursor, a time"
        " without a timezone, `until` not after `since`, a `q` with nothing to find, an"
        " unknown `order`, or a parameter this route does not take",
        "content": json_examples(
            limit_out_of_range={
                "detail": [
                    field_error(
                        ["query", "limit"],
                        "Input should be less than or equal to 1000",
                        "less_than_equal",
                        input="5000",
                        ctx={"le": 1000},
                    )
                ]
            },
            not_a_cursor={
                "detail": [field_error(["query", "after"], "not a valid cursor", "cursor")]
            },
            not_a_time={
                "detail": [
                    field_error(["query", "since"], TIME_HELP, "datetime", input="yesterday")
                ]
            },
            nothing_to_find={
                "detail": [
                    field_error(
                        ["query", "q"],
                        "each part of q needs a word to find, not only words to exclude ('-word')",
                        "search",
                        input="-debug",
                    )
                ]
            },
            unknown_parameter={
                "detail": [
                    {**_unknown_parameter("sinse", _EVENTS_PARAMETERS), "input": "2026-11-24"}
                ]
            },
        ),
    },
}

EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    404: problem_response(
        "no event of that topic and id is stored",
        unknown={"detail": "no event 'e-404' of topic 'auth.login' is stored"},
    ),
    **UNKNOWN_PARAMETER_RESPONSE,
}

READYZ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": json_examples(ready={"broker": "ok", "store": "ok"})},
    **UNKNOWN_PARAMETER_RESPONSE,
    503: {
        "model": Readiness,
        "description": "the broker or the store does not answer",
        "content": json_examples(
            broker_down={"broker": "unavailable", "store": "ok"},
            store_down={"broker": "ok", "store": "unavailable: SQLite: disk I/O error"},
        ),
    },
}
