"""Event timestamps as one comparable number: microseconds since 1970-01-01T00:00:00Z.

An event's ``timestamp`` is stored as sent, with whatever offset its producer used, so its text
does not sort in time order ("10:00+02:00" is before "09:00Z"). Both stores keep this number
beside it, computed here and nowhere else (the inserts and the migrations' backfills alike), so
``since``/``until`` and retention compare instants, not text.

The arithmetic is on integers: an instant near year 1 or 9999 whose offset moves it past what
``datetime`` can hold (``0001-01-01T00:00:00+01:00``) still has its number.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def utc_micros(timestamp: str) -> int:
    """The instant an ISO 8601 timestamp with an offset names, in microseconds since the epoch.

    Raises ValueError for text ``datetime.fromisoformat`` cannot read, or without an offset
    (what the event schema refuses too).
    """
    parsed = datetime.fromisoformat(timestamp)
    offset = parsed.utcoffset()
    if offset is None:
        raise ValueError(f"timestamp {timestamp!r} has no timezone")
    local = parsed.replace(tzinfo=None)
    return (local - _EPOCH) // _MICROSECOND - offset // _MICROSECOND


def utc_micros_or_none(timestamp: str) -> int | None:
    """:func:`utc_micros`, or None for text it cannot read (rows written before any check)."""
    try:
        return utc_micros(timestamp)
    except (ValueError, TypeError):
        return None


def now_micros() -> int:
    return (datetime.now(UTC).replace(tzinfo=None) - _EPOCH) // _MICROSECOND
