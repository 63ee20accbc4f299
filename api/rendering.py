"""Stored events as the API writes them: straight from the stored JSON.

A payload is not parsed and re-encoded on the way out (``orjson.Fragment`` embeds the stored
bytes), so a page or an export costs about its size, not a decode of every event.
"""

from __future__ import annotations

from typing import Any

import orjson

from aggregator.store import StoredEvent


def event_fields(event: StoredEvent) -> dict[str, Any]:
    """The event as ``StoredEventOut`` describes it."""
    return {
        "topic": event.topic,
        "event_id": event.event_id,
        "timestamp": event.timestamp,
        "source": event.source,
        "payload": orjson.Fragment(event.payload_json),
        "processed_at": event.processed_at,
        "publisher": event.publisher,
    }


def event_json(event: StoredEvent) -> bytes:
    return orjson.dumps(event_fields(event))


def page_json(events: list[StoredEvent], next_cursor: str | None) -> bytes:
    return orjson.dumps({"events": [event_fields(e) for e in events], "next": next_cursor})


def ndjson_lines(events: list[StoredEvent]) -> bytes:
    """One JSON object per line, each line ended by a newline."""
    return b"".join(orjson.dumps(event_fields(e), option=orjson.OPT_APPEND_NEWLINE) for e in events)
