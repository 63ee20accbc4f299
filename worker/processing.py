"""What the worker does with a batch of message bodies, without any AMQP object in sight.

Bodies are decoded into events (or found to be poison), the events stored in one transaction,
and transient store failures retried a bounded number of times. The consumer decides what to
ack, reject or dead-letter from the :class:`BatchOutcome`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from aggregator.events import Event, decode_wire
from aggregator.metrics import WorkerMetrics
from aggregator.store import DedupStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite errors worth another try: a locked or busy database, a disk I/O hiccup.
TRANSIENT_STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.OperationalError,)


class StoreUnavailable(Exception):
    """The store kept failing after every in-process attempt; the batch must be requeued."""


@dataclass(frozen=True)
class Poison:
    """A body that can never be processed: index in the batch and a one-line reason."""

    index: int
    reason: str


@dataclass
class BatchOutcome:
    stored: list[Event] = field(default_factory=list)
    duplicates: list[Event] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)


class BatchProcessor:
    def __init__(
        self,
        store: DedupStore,
        *,
        attempts: int,
        first_backoff_s: float = 0.1,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._store = store
        self._attempts = attempts
        self._first_backoff_s = first_backoff_s
        self._metrics = metrics or WorkerMetrics()

    async def process(self, bodies: Sequence[bytes]) -> BatchOutcome:
        """Store every valid event of the batch in one transaction; report poison by index."""
        outcome = BatchOutcome()
        events: list[Event] = []
        for index, body in enumerate(bodies):
            try:
                events.append(decode_wire(body))
            except ValueError as exc:
                outcome.poison.append(Poison(index, str(exc)))
        if events:
            with self._metrics.commit_seconds.time():
                result = await self.retrying(lambda: self._store.store_events(events))
            outcome.stored, outcome.duplicates = result.stored, result.duplicates
            self._metrics.stored.inc(len(result.stored))
            self._metrics.duplicates.inc(len(result.duplicates))
            for event in result.duplicates:
                log.info("duplicate dropped: topic=%s event_id=%s", event.topic, event.event_id)
        return outcome

    async def count_dead_lettered(self, count: int) -> None:
        await self.retrying(lambda: self._store.add_dead_lettered(count))

    async def retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a store operation, retrying transient failures with a doubling backoff."""
        backoff = self._first_backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return await operation()
            except TRANSIENT_STORE_ERRORS as exc:
                if attempt == self._attempts:
                    raise StoreUnavailable(
                        f"store failed {attempt} time(s), last: {exc!r}"
                    ) from exc
                self._metrics.transient_retries.inc()
                log.warning(
                    "store failed (attempt %d of %d): %r; retrying in %.2fs",
                    attempt,
                    self._attempts,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff *= 4
        raise AssertionError("unreachable: the loop returns or raises")
