"""The project's exceptions: one root, and a branch per party that can fail.

Drivers' errors (sqlite3, asyncpg, aiormq) are translated into these at the module that talks to
the driver, so the code that decides what to do with a failure never imports a driver.
"""

from __future__ import annotations

from typing import Any


class AggregatorError(Exception):
    """Root of every error the aggregator raises on purpose."""


# -- bad input: the client's to fix; never retried ------------------------------------------


class InvalidInput(AggregatorError, ValueError):
    """Something a client sent cannot become events."""


class InvalidBody(InvalidInput):
    """The body is not JSON, or not an event, a list of events or ``{"events": [...]}``."""


class InvalidEvents(InvalidInput):
    """One or more events failed validation; ``errors`` is in FastAPI's 422 shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s)")
        self.errors = errors


class TooManyEvents(InvalidInput):
    """The batch holds more events than ``AGG_MAX_BATCH``."""


class EventTooLarge(InvalidInput):
    """An event's JSON is larger than ``AGG_MAX_EVENT_BYTES``; ``index``: its place in a batch."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class InvalidRecord(InvalidInput):
    """A record of an ingest format (an NDJSON line, an OTLP log record) cannot become an event.

    The message is one line, and says which record (its line, its index) and why.
    """


class Poison(InvalidInput):
    """An AMQP body that can never become a stored event; the message is a one-line reason."""


# -- the store --------------------------------------------------------------------------------


class StoreError(AggregatorError):
    """The store did not do what was asked."""


class StoreUnavailable(StoreError):
    """The store fails for everything (I/O, disk full, locked, unreachable): hold and retry."""


class RowRefused(StoreError):
    """The store refuses these rows for a reason of their own (not I/O, not locking)."""


# -- the broker -------------------------------------------------------------------------------


class BrokerError(AggregatorError):
    """The broker did not do what was asked."""


class BrokerUnreachable(BrokerError, ConnectionError):
    """No broker accepted a connection before the deadline."""


class BrokerUnavailable(BrokerError):
    """The broker does not hold the events (down, nack, return or no confirm in time): retry."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short label for metrics: not_connected, timeout, unroutable, …
