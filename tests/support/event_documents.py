"""Event documents for the contract's tests, and the two ways in: a request body as the API parses
it, an AMQP body as the worker decodes it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator.decoding import decode_wire, parse_request_body
from aggregator.errors import InvalidEvents
from aggregator.events import Event

MAX_EVENT_BYTES = 1024 * 1024


def parse(raw: bytes, max_batch: int = 100, max_event_bytes: int = MAX_EVENT_BYTES) -> list[Event]:
    return parse_request_body(raw, max_batch=max_batch, max_event_bytes=max_event_bytes)


def decode(raw: bytes, max_event_bytes: int = MAX_EVENT_BYTES) -> Event:
    return decode_wire(raw, max_event_bytes=max_event_bytes)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "topic": "auth.login",
        "event_id": "6f1c-0001",
        "timestamp": "2026-11-24T10:00:00Z",
        "source": "svc-a",
        "payload": {"user": "alice"},
    }
    base.update(overrides)
    return base


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def errors_of(document: Any, max_batch: int = 100) -> list[dict[str, Any]]:
    with pytest.raises(InvalidEvents) as caught:
        parse(body(document), max_batch=max_batch)
    errors: list[dict[str, Any]] = caught.value.errors
    return errors
