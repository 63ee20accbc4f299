"""What the worker does with a batch of message bodies, without any AMQP object in sight.

Each body is decoded (or found to be poison), and the events are stored in one transaction. The
three failure classes are told apart here:

* **Poison**: a body that is not an event (:mod:`aggregator.decoding`), or a row the store
  refuses while it accepts others. The store's exception is not trusted to name the culprit: a
  batch that fails for any reason but unavailability is split in halves until the failing
  event stands alone, and it is poison only if the store then still accepts a canary row.
* **Store unavailable**: the store fails for everything. The batch is held, neither acked nor
  requeued, and retried with capped exponential backoff for as long as it takes; said once per
  state change (a log line and ``agg_worker_store_up``), never once per attempt.
* **The process dies**: not seen here; the consumer processes redeliveries one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from aggregator.decoding import decode_wire
from aggregator.errors import AggregatorError, Poison, StoreUnavailable
from aggregator.events import Event
from aggregator.metrics import WorkerMetrics
from aggregator.store import DedupStore, StoreResult

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 30.0


class Abandoned(AggregatorError):
    """The wait for the store was given up: the worker is stopping, or the channel closed."""


@dataclass(frozen=True)
class PoisonAt:
    """A body that can never be stored: its index in the batch and a one-line reason."""

    index: int
    reason: str


@dataclass
class BatchOutcome:
    """Every index of the batch lands in exactly one of the three lists."""

    stored: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    poison: list[PoisonAt] = field(default_factory=list)
    duplicate_events: list[Event] = field(default_factory=list)


class StoreHealth:
    """Whether the store is up, said once per change: a log line and ``agg_worker_store_up``."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics
        self._down_since: float | None = None
        metrics.store_up.set(1)

    @property
    def up(self) -> bool:
        return self._down_since is None

    def failed(self, exc: BaseException) -> None:
        self._metrics.transient_retries.inc()
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._metrics.store_up.set(0)
            log.error(
                "store unavailable: %s; holding the deliveries in hand and retrying (backoff up"
                " to %.0fs), nothing is acked or dead-lettered meanwhile",
                exc,
                MAX_BACKOFF_S,
            )

    def recovered(self) -> None:
        if self._down_since is not None:
            log.warning(
                "store available again after %.1fs; carrying on",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._metrics.store_up.set(1)


class BatchProcessor:
    def __init__(
        self,
        store: DedupStore,
        *,
        max_event_bytes: int,
        metrics: WorkerMetrics | None = None,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self._store = store
        self._max_event_bytes = max_event_bytes
        self._metrics = metrics or WorkerMetrics()
        self.health = StoreHealth(self._metrics)
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s

    async def process(
        self,
        bodies: Sequence[bytes],
        *,
        abandon: asyncio.Event,
        publishers: Sequence[str | None] | None = None,
    ) -> BatchOutcome:
        """Store every event of the batch, or say why not, index by index.

        ``publishers``: who published each body (the x-publisher header), stored beside it.
        Returns once each body is stored, a duplicate or poison; raises :class:`Abandoned` when
        ``abandon`` is set while the store is unavailable (nothing of the batch is then settled).
        """
        outcome = BatchOutcome()
        decoded: list[tuple[int, Event]] = []
        for index, body in enumerate(bodies):
            try:
                event = decode_wire(body, max_event_bytes=self._max_event_bytes)
                if publishers is not None:
                    event.published_by(publishers[index])
                decoded.append((index, event))
            except Poison as exc:
                outcome.poison.append(PoisonAt(index, str(exc)))
        if decoded:
            await self._store_split(decoded, outcome, abandon)
            self._metrics.stored.inc(len(outcome.stored))
            self._metrics.duplicates.inc(len(outcome.duplicates))
        outcome.poison.sort(key=lambda poison: poison.index)
        return outcome

    async def count_dead_lettered(self, count: int, *, abandon: asyncio.Event) -> None:
        await self.held(lambda: self._store.add_dead_lettered(count), abandon)

    async def _store_split(
        self, items: list[tuple[int, Event]], outcome: BatchOutcome, abandon: asyncio.Event
    ) -> None:
        """Store ``items`` in one transaction; on a refusal, each half in its own."""
        events = [event for _, event in items]
        try:
            result = await self.held(lambda: self._store_events(events), abandon)
        except Abandoned:
            raise
        except Exception as exc:  # any refusal but unavailability: find the culprit
            if len(items) > 1:
                middle = len(items) // 2
                await self._store_split(items[:middle], outcome, abandon)
                await self._store_split(items[middle:], outcome, abandon)
                return
            await self._refused_alone(items[0], exc, outcome, abandon)
            return
        index_of = {id(event): index for index, event in items}
        outcome.stored += [index_of[id(event)] for event in result.stored]
        outcome.duplicates += [index_of[id(event)] for event in result.duplicates]
        outcome.duplicate_events += result.duplicates

    async def _refused_alone(
        self,
        item: tuple[int, Event],
        refusal: Exception,
        outcome: BatchOutcome,
        abandon: asyncio.Event,
    ) -> None:
        """One event the store refused: poison if a canary row goes in, else the store is down."""
        index, event = item
        backoff = self._first_backoff_s
        while True:
            try:
                await self.held(self._store.check_writable, abandon)
            except Abandoned:
                raise
            except Exception as canary:
                # Every row is refused (a bug, a schema the code does not match): that is the
                # store being unavailable, not this event being poison.
                self.health.failed(
                    StoreUnavailable(f"the store refuses even a canary row: {canary!r}")
                )
                await self._pause(backoff, abandon)
                backoff = min(backoff * 2, self._max_backoff_s)
                try:
                    result = await self.held(lambda: self._store_events([event]), abandon)
                except Abandoned:
                    raise
                except Exception as again:
                    refusal = again
                    continue
                (outcome.stored if result.stored else outcome.duplicates).append(index)
                outcome.duplicate_events += result.duplicates
                return
            reason = f"the store refused the event: {type(refusal).__name__}: {refusal}"
            outcome.poison.append(PoisonAt(index, reason))
            return

    async def _store_events(self, events: list[Event]) -> StoreResult:
        started = time.perf_counter()
        result = await self._store.store_events(events)
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        return result

    async def held(self, operation: Callable[[], Awaitable[T]], abandon: asyncio.Event) -> T:
        """Run a store operation until it is not unavailable, backing off up to the cap."""
        backoff = self._first_backoff_s
        while True:
            try:
                result = await operation()
            except StoreUnavailable as exc:
                self.health.failed(exc)
                await self._pause(backoff, abandon)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            self.health.recovered()
            return result

    async def _pause(self, seconds: float, abandon: asyncio.Event) -> None:
        """Wait ``seconds`` before the next attempt; raise :class:`Abandoned` if told to."""
        if abandon.is_set():
            raise Abandoned("gave up waiting for the store")
        try:
            async with asyncio.timeout(seconds):
                await abandon.wait()
        except TimeoutError:
            return
        raise Abandoned("gave up waiting for the store")
