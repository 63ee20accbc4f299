"""Event timestamps the ingest formats make: RFC 3339 in UTC, with the precision they came with.

``datetime`` keeps microseconds, OTLP sends nanoseconds, so the text is written here from the
integers, never through a ``datetime``'s fraction: ``1764000000123456789`` nanoseconds is
``2025-11-24T16:00:00.123456789Z``. Every string made here passes the event's own timestamp
check (``datetime.fromisoformat`` with a timezone).
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
