"""Event timestamps, both ways: written from integers, and read back as one comparable number.

Writing (the ingest formats): RFC 3339 in UTC with the precision the source had. ``datetime``
keeps microseconds, OTLP sends nanoseconds, so the text is written from the integers, never
through a ``datetime``'s fraction: ``1764000000123456789`` nanoseconds is
``2025-11-24T16:00:00.123456789Z``. Every string made here passes the event's own timestamp
check (``datetime.fromisoformat`` with a timezone).

Reading (queries and retention): microseconds since 1970-01-01T00:00:00Z. An event's
``timestamp`` is stored as sent, with whatever offset its producer used, so its text does not
sort in time order ("10:00+02:00" is before "09:00Z"). Both stores keep this number beside it,
computed here and nowhere else (the inserts and the migrations' backfills alike), so
``since``/``until`` and retention compare instants, not text. The arithmetic is on integers:
an instant near year 1 or 9999 whose offset moves it past what ``datetime`` can hold
(``0001-01-01T00:00:00+01:00``) still has its number.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

NANOS_PER_SECOND = 1_000_000_000
MICROS_PER_SECOND = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _whole_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` for a Unix second (a batch's records share a few seconds)."""
    moment = _EPOCH + timedelta(seconds=seconds)  # OverflowError outside years 1-9999
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def from_unix_nanos(nanos: int) -> str:
    """Nanoseconds since the epoch, as RFC 3339 with nine fractional digits and ``Z``."""
    seconds, fraction = divmod(nanos, NANOS_PER_SECOND)
    return f"{_whole_second(seconds)}.{fraction:09d}Z"


def from_unix_seconds(value: float) -> str:
    """Seconds since the epoch (an integer or a float, as Fluent Bit's ``date`` is), to the
    microsecond: a double holds no finer digits for today's dates.

    Raises ValueError for a value that is not finite or not within years 1 to 9999.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a time")
    micros = value * MICROS_PER_SECOND if isinstance(value, int) else round(value * 1e6)
    try:
        return _from_micros(micros)
    except OverflowError:
        raise ValueError(f"{value} seconds since 1970 is outside years 1 to 9999") from None


def _from_micros(micros: int) -> str:
    seconds, fraction = divmod(micros, MICROS_PER_SECOND)
    return f"{_whole_second(seconds)}.{fraction:06d}Z"


def arrival() -> str:
    """Now, to the microsecond: the timestamp of a record that brings none of its own."""
    return _from_micros(time.time_ns() // 1000)


# -- reading ------------------------------------------------------------------------------------

_NAIVE_EPOCH = datetime(1970, 1, 1)
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
    return (local - _NAIVE_EPOCH) // _MICROSECOND - offset // _MICROSECOND


def utc_micros_or_none(timestamp: str) -> int | None:
    """:func:`utc_micros`, or None for text it cannot read (rows written before any check)."""
    try:
        return utc_micros(timestamp)
    except (ValueError, TypeError):
        return None


def now_micros() -> int:
    return (datetime.now(UTC).replace(tzinfo=None) - _NAIVE_EPOCH) // _MICROSECOND
