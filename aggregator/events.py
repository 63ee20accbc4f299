"""The event: its schema and its one canonical encoding.

An event's JSON is re-encoded once, here, from what was parsed: the API publishes these bytes and
the worker stores the payload's, so what was accepted is what is stored. How request bodies and
AMQP bodies become events (and what is refused) is :mod:`aggregator.decoding`.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

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


def check_timestamp(value: str) -> str:
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
Timestamp = Annotated[str, AfterValidator(check_timestamp)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class EventFields(BaseModel):
    """The five fields of an event, as the contract states them (the schema both sides check)."""

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


class Event(EventFields):
    """One log event. Its identity is ``(topic, event_id)``; the timestamp is kept as sent."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.topic, self.event_id)

    # Not one of the five fields: who published it (an API key's name), carried beside the
    # event in the AMQP header x-publisher and stored with it. Kept in the instance's __dict__,
    # as the cached encodings are: a pydantic private attribute costs every event an extra
    # dict at construction, on the hottest path there is.
    @property
    def publisher(self) -> str | None:
        publisher: str | None = self.__dict__.get("_publisher")
        return publisher

    def published_by(self, publisher: str | None) -> Event:
        """This event, marked as published by ``publisher`` (identity and wire unchanged)."""
        self.__dict__["_publisher"] = publisher
        return self

    @cached_property
    def payload_json(self) -> bytes:
        """The payload as stored: orjson's encoding of what was parsed."""
        return orjson.dumps(self.payload)

    @cached_property
    def wire(self) -> bytes:
        """The AMQP body: the five fields as UTF-8 JSON, the payload as :attr:`payload_json`."""
        return orjson.dumps(
            {
                "topic": self.topic,
                "event_id": self.event_id,
                "timestamp": self.timestamp,
                "source": self.source,
                "payload": orjson.Fragment(self.payload_json),
            }
        )
