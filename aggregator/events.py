"""The event: its schema, how a request body or an AMQP body becomes events, and the wire format.

Both the API (which validates before it publishes) and the worker (which validates again, because
any AMQP client may publish) use this module, so the two can never disagree on what an event is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

CONTENT_TYPE = "application/json"

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_event_id(value: str) -> str:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("event_id must be valid UTF-8") from None
    if not 1 <= len(encoded) <= 255:
        raise ValueError("event_id must be 1 to 255 bytes of UTF-8")
    if _CONTROL_CHARS.search(value):
        raise ValueError("event_id must not contain control characters")
    return value


def _check_timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("timestamp must be an ISO 8601 date and time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("timestamp must include a timezone (e.g. 'Z' or '+02:00')")
    return value


# A topic is an AMQP routing key, so it is ASCII and at most 255 bytes.
Topic = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
]
EventId = Annotated[str, AfterValidator(_check_event_id)]
Timestamp = Annotated[str, AfterValidator(_check_timestamp)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class Event(BaseModel):
    """One log event. Its identity is ``(topic, event_id)``; the timestamp is kept as sent."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "topic": "auth.login",
                    "event_id": "6f1c2a9e-8d2b-4c1e-9f4e-2b7d1a0c5e11",
                    "timestamp": "2026-11-24T10:00:00Z",
                    "source": "svc-a",
                    "payload": {"user": "alice", "ok": True},
                }
            ]
        },
    )

    topic: Topic = Field(description="AMQP routing key: letters, digits and ._- only")
    event_id: EventId = Field(
        description="1-255 bytes of UTF-8, no control characters, unique within its topic",
        # For the OpenAPI document only: the validator checks bytes, JSON Schema counts characters.
        json_schema_extra={
            "minLength": 1,
            "maxLength": 255,
            "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
        },
    )
    timestamp: Timestamp = Field(
        description=(
            "ISO 8601 with a timezone, kept as sent; an RFC 3339 date-time is (with upper-case"
            " T and Z, and no leap second)"
        ),
        # For the OpenAPI document only: the validator is datetime.fromisoformat.
        json_schema_extra={"format": "date-time"},
    )
    source: Source = Field(description="who produced the event")
    payload: dict[str, Any] = Field(description="any JSON object")

    @property
    def key(self) -> tuple[str, str]:
        return (self.topic, self.event_id)

    def to_wire(self) -> bytes:
        """The AMQP body: the five fields as UTF-8 JSON."""
        return orjson.dumps(
            {
                "topic": self.topic,
                "event_id": self.event_id,
                "timestamp": self.timestamp,
                "source": self.source,
                "payload": self.payload,
            }
        )


_EVENT_LIST: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class InvalidBody(ValueError):
    """The body is not JSON, or not an event, a list of events or ``{"events": [...]}``."""


class InvalidEvents(ValueError):
    """One or more events failed validation; ``errors`` is in FastAPI's 422 shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


class TooManyEvents(ValueError):
    """The batch holds more events than allowed."""


def parse_request_body(body: bytes, *, max_batch: int) -> list[Event]:
    """Events from a ``POST /publish`` body: one event, a JSON array, or ``{"events": [...]}``.

    All or nothing: any invalid event raises :class:`InvalidEvents` naming each bad index and field.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"body is not valid JSON: {exc}") from None

    prefix: tuple[str | int, ...]
    if isinstance(document, list):
        items: Sequence[Any] = document
        prefix = ("body",)
    elif isinstance(document, dict) and "events" in document and "topic" not in document:
        if set(document) != {"events"} or not isinstance(document["events"], list):
            raise InvalidEvents(
                [
                    {
                        "loc": ["body"],
                        "msg": 'an envelope must be exactly {"events": [...]}',
                        "type": "envelope",
                    }
                ]
            )
        items = document["events"]
        prefix = ("body", "events")
    elif isinstance(document, dict):
        return [_validate_one(document)]
    else:
        raise InvalidEvents(
            [
                {
                    "loc": ["body"],
                    "msg": 'expected an event, an array of events or {"events": [...]}',
                    "type": "model_type",
                }
            ]
        )

    if not items:
        raise InvalidEvents(
            [{"loc": list(prefix), "msg": "the batch is empty", "type": "too_short"}]
        )
    if len(items) > max_batch:
        raise TooManyEvents(f"{len(items)} events in one request; the limit is {max_batch}")
    try:
        return _EVENT_LIST.validate_python(items)
    except ValidationError as exc:
        raise InvalidEvents(_fastapi_errors(exc, prefix)) from None


def _validate_one(document: dict[str, Any]) -> Event:
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        raise InvalidEvents(_fastapi_errors(exc, ("body",))) from None


def _fastapi_errors(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def decode_wire(body: bytes) -> Event:
    """The event in an AMQP body; raises ``ValueError`` with a one-line reason for poison."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError(f"body is JSON {type(document).__name__}, not an event object")
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(f"not a valid event: {reasons}") from None
