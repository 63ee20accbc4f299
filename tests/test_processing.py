"""The worker's processing logic, with no AMQP object: decode, store, hold, split, poison.

On each store backend: the faults are injected around a real store, so what is stored and
counted is the backend's own doing.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from aggregator.errors import RowRefused, StoreUnavailable
from aggregator.events import Event
from aggregator.metrics import WorkerMetrics
from aggregator.store import (
    EVERYTHING,
    PAGE_BYTES,
    DedupStore,
    EventQuery,
    Position,
    PostgresStore,
    SqliteStore,
    Stats,
    StoredEvent,
    StoreResult,
)
from tests.support.private_postgres import PrivatePostgres
from tests.support.waiting import eventually
from worker.processing import Abandoned, BatchProcessor

MAX_EVENT_BYTES = 1024 * 1024


def wire(event_id: str, topic: str = "app.log") -> bytes:
    return orjson.dumps(
        {
            "topic": topic,
            "event_id": event_id,
            "timestamp": "2026-11-24T10:00:00Z",
            "source": "svc",
            "payload": {},
        }
    )


class Faulty:
    """A real store (each backend in turn) with faults: unavailable for a while, or refusing
    some rows; everything else passes through."""

    def __init__(self, store: DedupStore) -> None:
        self.store = store
        self.unavailable_for = 0  # store_events calls that fail as unavailable first
        self.refuse: frozenset[str] = frozenset()  # event ids whose batch the store refuses
        self.refusal: type[Exception] = RowRefused
        self.refuse_canary = False
        self.calls = 0

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        self.calls += 1
        if self.calls <= self.unavailable_for:
            raise StoreUnavailable("the store is down (a fault of the test)")
        if any(event.event_id in self.refuse for event in events):
            raise self.refusal("refused")
        return await self.store.store_events(events)

    async def check_writable(self) -> None:
        if self.refuse_canary:
            raise TypeError("every row fails")
        await self.store.check_writable()

    async def close(self) -> None:
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    async def add_dead_lettered(self, count: int) -> None:
        await self.store.add_dead_lettered(count)

    async def stats(self) -> Stats:
        return await self.store.stats()

    async def events_after(
        self,
        *,
        query: EventQuery = EVERYTHING,
        after: Position | None = None,
        limit: int,
        max_bytes: int = PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool]:
        return await self.store.events_after(
            query=query, after=after, limit=limit, max_bytes=max_bytes
        )

    async def get_event(self, topic: str, event_id: str) -> StoredEvent | None:
        return await self.store.get_event(topic, event_id)

    async def delete_expired(self, before_us: int, limit: int) -> int:
        return await self.store.delete_expired(before_us, limit)


@pytest.fixture
def faulty(store: DedupStore) -> Faulty:
    return Faulty(store)


def sample(metrics: WorkerMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def processor(store: DedupStore, metrics: WorkerMetrics | None = None) -> BatchProcessor:
    return BatchProcessor(
        store,
        max_event_bytes=MAX_EVENT_BYTES,
        metrics=metrics,
        first_backoff_s=0.001,
        max_backoff_s=0.004,
    )


async def test_valid_duplicate_and_poison_in_one_batch(faulty: Faulty) -> None:
    bodies = [wire("a"), b"not json", wire("b"), wire("a"), b'{"topic": "t"}', wire("a", "other")]
    outcome = await processor(faulty).process(bodies, abandon=asyncio.Event())
    assert outcome.stored == [0, 2, 5]
    assert outcome.duplicates == [3]
    assert [p.index for p in outcome.poison] == [1, 4]
    assert "JSON" in outcome.poison[0].reason
    assert "event_id" in outcome.poison[1].reason
    stats = await faulty.stats()
    assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (4, 3, 1)
    assert stats.dead_lettered == 0  # counted by the consumer once the copy is confirmed


async def test_a_batch_of_only_poison_touches_nothing(faulty: Faulty) -> None:
    outcome = await processor(faulty).process([b"", b"[]"], abandon=asyncio.Event())
    assert len(outcome.poison) == 2
    assert faulty.calls == 0
    assert (await faulty.stats()).received == 0


async def test_an_unavailable_store_holds_the_batch_and_says_so_once(
    faulty: Faulty, caplog: pytest.LogCaptureFixture
) -> None:
    faulty.unavailable_for = 12
    metrics = WorkerMetrics()
    with caplog.at_level(logging.INFO, logger="worker.processing"):
        outcome = await processor(faulty, metrics).process([wire("a")], abandon=asyncio.Event())
    assert faulty.calls == 13
    assert outcome.stored == [0]
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.processing"]
    assert len(lines) == 2, lines  # one when it went down, one when it came back
    assert lines[0].startswith("store unavailable") and "available again" in lines[1]
    assert sample(metrics, "agg_worker_store_up") == 1
    assert sample(metrics, "agg_worker_transient_retries_total") == 12


async def test_abandon_while_held_settles_nothing(faulty: Faulty) -> None:
    faulty.unavailable_for = 10**9
    metrics = WorkerMetrics()
    abandon = asyncio.Event()
    work = asyncio.create_task(
        processor(faulty, metrics).process([wire("a"), b"poison"], abandon=abandon)
    )
    while faulty.calls < 3:
        await asyncio.sleep(0.001)  # poll interval: the store is being retried
    assert sample(metrics, "agg_worker_store_up") == 0
    abandon.set()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(work, 5)
    assert (await faulty.stats()).received == 0


@pytest.mark.parametrize("refusal", [RowRefused, TypeError])
async def test_a_refused_row_is_poison_alone(faulty: Faulty, refusal: type[Exception]) -> None:
    faulty.refuse = frozenset({"bad"})
    faulty.refusal = refusal
    bodies = [wire(f"ok-{i}") for i in range(40)]
    bodies.insert(23, wire("bad"))
    outcome = await processor(faulty).process(bodies, abandon=asyncio.Event())
    assert [p.index for p in outcome.poison] == [23]
    assert "refused" in outcome.poison[0].reason
    assert sorted(outcome.stored) == [i for i in range(41) if i != 23]
    stats = await faulty.stats()
    assert (stats.received, stats.unique_processed, stats.dead_lettered) == (40, 40, 0)
    # Split in halves, not one transaction per event: about 2 * log2(41) attempts.
    assert faulty.calls <= 14


async def test_every_row_refused_is_the_store_not_poison(faulty: Faulty) -> None:
    faulty.refuse = frozenset({"a"})
    faulty.refuse_canary = True
    metrics = WorkerMetrics()
    abandon = asyncio.Event()
    work = asyncio.create_task(processor(faulty, metrics).process([wire("a")], abandon=abandon))
    while faulty.calls < 4:
        await asyncio.sleep(0.001)  # poll interval: the store is being retried
    assert sample(metrics, "agg_worker_store_up") == 0
    abandon.set()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(work, 5)


async def test_a_locked_database_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "agg.db"
    store = await SqliteStore.open(path, busy_timeout_ms=20)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: blocker.execute("ROLLBACK"))
        release.start()
        outcome = await processor(store).process([wire("a")], abandon=asyncio.Event())
        release.join()
        assert outcome.stored == [0]
    finally:
        blocker.close()
        await store.close()


async def test_dead_letter_count_is_committed(faulty: Faulty) -> None:
    faulty.unavailable_for = 0
    await processor(faulty).count_dead_lettered(3, abandon=asyncio.Event())
    assert (await faulty.stats()).dead_lettered == 3


async def test_a_row_postgresql_refuses_is_poison_alone(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        bodies = [wire(f"ok-{i}") for i in range(20)]
        # Valid JSON, a valid event, and a payload jsonb cannot hold (22P05).
        bodies.insert(7, orjson.dumps({**orjson.loads(wire("nul")), "payload": {"s": "a\0b"}}))
        outcome = await processor(store).process(bodies, abandon=asyncio.Event())
        assert [p.index for p in outcome.poison] == [7]
        assert "22P05" in outcome.poison[0].reason
        assert sorted(outcome.stored) == [i for i in range(21) if i != 7]
        stats = await store.stats()
        assert (stats.received, stats.unique_processed) == (20, 20)
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_postgresql_outage_holds_the_batch_until_the_server_is_back() -> None:
    with PrivatePostgres() as server:
        store = await PostgresStore.open(server.url)
        try:
            metrics = WorkerMetrics()
            await asyncio.to_thread(server.stop)
            work = asyncio.create_task(
                processor(store, metrics).process([wire("a"), wire("b")], abandon=asyncio.Event())
            )

            async def store_up() -> float | None:
                return sample(metrics, "agg_worker_store_up")

            await eventually(
                store_up,
                lambda up: up == 0,
                what="the processor to report the store down",
            )
            assert not work.done()
            await asyncio.to_thread(server.start)
            outcome = await asyncio.wait_for(work, 30)
            assert (outcome.stored, outcome.poison) == ([0, 1], [])
            assert sample(metrics, "agg_worker_store_up") == 1
            assert (await store.stats()).unique_processed == 2
        finally:
            await store.close()
