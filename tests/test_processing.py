"""The worker's processing logic, with no AMQP message object: decode, store, retry, poison."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from aggregator.events import Event
from aggregator.store import DedupStore, StoreResult
from worker.processing import BatchProcessor, StoreUnavailable


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


class LockedFirst(DedupStore):
    """A real store whose first ``failures`` writes fail as a locked database would."""

    def __init__(self, store: DedupStore, failures: int) -> None:
        super().__init__(store._db)
        self.failures = failures
        self.calls = 0

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise sqlite3.OperationalError("database is locked")
        return await super().store_events(events)


async def test_valid_duplicate_and_poison_in_one_batch(store: DedupStore) -> None:
    processor = BatchProcessor(store, attempts=1)
    bodies = [wire("a"), b"not json", wire("b"), wire("a"), b'{"topic": "t"}', wire("a", "other")]
    outcome = await processor.process(bodies)
    assert [(e.topic, e.event_id) for e in outcome.stored] == [
        ("app.log", "a"),
        ("app.log", "b"),
        ("other", "a"),
    ]
    assert [e.event_id for e in outcome.duplicates] == ["a"]
    assert [p.index for p in outcome.poison] == [1, 4]
    assert "JSON" in outcome.poison[0].reason
    assert "event_id" in outcome.poison[1].reason
    stats = await store.stats()
    assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (4, 3, 1)
    assert stats.dead_lettered == 0  # counted by the consumer once the copy is confirmed


async def test_a_batch_of_only_poison_touches_nothing(store: DedupStore) -> None:
    outcome = await BatchProcessor(store, attempts=1).process([b"", b"[]"])
    assert len(outcome.poison) == 2
    assert (await store.stats()).received == 0


async def test_transient_failure_is_retried_then_stored(store: DedupStore) -> None:
    flaky = LockedFirst(store, failures=2)
    processor = BatchProcessor(flaky, attempts=3, first_backoff_s=0.001)
    outcome = await processor.process([wire("a")])
    assert flaky.calls == 3
    assert len(outcome.stored) == 1


async def test_retries_are_bounded(store: DedupStore) -> None:
    flaky = LockedFirst(store, failures=10)
    processor = BatchProcessor(flaky, attempts=3, first_backoff_s=0.001)
    with pytest.raises(StoreUnavailable, match="locked"):
        await processor.process([wire("a")])
    assert flaky.calls == 3
    assert (await store.stats()).received == 0


async def test_really_locked_database_gives_up(tmp_path: Path) -> None:
    store = await DedupStore.open(tmp_path / "agg.db", busy_timeout_ms=20)
    blocker = sqlite3.connect(tmp_path / "agg.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        processor = BatchProcessor(store, attempts=2, first_backoff_s=0.001)
        with pytest.raises(StoreUnavailable):
            await processor.process([wire("a")])
        blocker.execute("ROLLBACK")
        assert len((await processor.process([wire("a")])).stored) == 1
    finally:
        blocker.close()
        await store.close()


async def test_dead_letter_count_is_committed(store: DedupStore) -> None:
    processor = BatchProcessor(store, attempts=1)
    await processor.count_dead_lettered(3)
    assert (await store.stats()).dead_lettered == 3
