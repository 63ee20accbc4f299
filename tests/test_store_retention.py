"""Deleting old events while keeping their keys, on each backend; and what the store reports.

``delete_expired`` is what the worker's retention task calls (tests/test_retention.py runs the
task itself): the oldest events by their own timestamp go, a batch per transaction, and every
key stays seen, so a replay of a deleted event is still a duplicate and the counters stay
exact.
"""

from __future__ import annotations

import asyncio
import os

from aggregator.store import DedupStore, EventQuery
from aggregator.timestamps import utc_micros
from tests.support.stores import StoreFactory, make_event

CUTOFF = utc_micros("2026-01-01T00:00:00Z")


def old(n: int) -> str:
    """An old timestamp, older for smaller n, in offsets of all kinds."""
    offset = ("Z", "+05:30", "-08:00")[n % 3]
    return f"2025-03-{1 + n // 24:02}T{n % 24:02}:00:00{offset}"


async def test_old_events_go_a_batch_at_a_time_and_their_keys_stay(store: DedupStore) -> None:
    olds = [make_event(f"old-{n}", timestamp=old(n), payload={"w": "ancient"}) for n in range(25)]
    news = [make_event(f"new-{n}", timestamp="2026-11-24T10:00:00Z") for n in range(5)]
    await store.store_events(olds[:10] + news + olds[10:])
    before = await store.stats()
    assert (before.stored_events, before.expired) == (30, 0)

    assert [await store.delete_expired(CUTOFF, 10) for _ in range(4)] == [10, 10, 5, 0]

    page, more = await store.events_after(limit=100)
    assert [e.event_id for e in page] == [f"new-{n}" for n in range(5)] and not more
    assert await store.get_event("app.log", "old-3") is None
    assert (await store.events_after(query=EventQuery(text="ancient"), limit=10))[0] == []
    stats = await store.stats()
    assert (stats.unique_processed, stats.expired, stats.stored_events) == (30, 25, 5)
    assert stats.topics == {"app.log": 30}  # ever stored, like unique_processed

    # A replay of everything: the deleted events are duplicates too; nothing comes back.
    replay = await store.store_events([*olds, *news, make_event("newer")])
    assert [e.event_id for e in replay.stored] == ["newer"]
    assert len(replay.duplicates) == 30
    stats = await store.stats()
    assert stats.received == stats.unique_processed + stats.duplicate_dropped == 61
    assert (stats.unique_processed, stats.stored_events) == (31, 6)
    assert await store.get_event("app.log", "old-3") is None


async def test_the_oldest_instants_go_first_whatever_their_offset(store: DedupStore) -> None:
    await store.store_events(
        [
            make_event("third", timestamp="2025-01-01T10:00:00+01:00"),  # 09:00Z
            make_event("first", timestamp="2025-01-01T03:00:00-05:00"),  # 08:00Z
            make_event("second", timestamp="2025-01-01T08:30:00Z"),
            make_event("kept", timestamp="2025-01-01T12:00:00+02:00"),  # 10:00Z
        ]
    )
    cutoff = utc_micros("2025-01-01T10:00:00Z")
    assert await store.delete_expired(cutoff, 1) == 1
    assert await store.get_event("app.log", "first") is None
    assert await store.delete_expired(cutoff, 1) == 1
    assert await store.get_event("app.log", "second") is None
    assert await store.delete_expired(cutoff, 5) == 1
    page, _ = await store.events_after(limit=10)
    assert [e.event_id for e in page] == ["kept"]


async def test_two_stores_deleting_at_once_count_each_event_once(stores: StoreFactory) -> None:
    first, second = await stores.open(), await stores.open()
    await first.store_events([make_event(f"o{n}", timestamp=old(n)) for n in range(60)])

    async def delete_all(store: DedupStore) -> int:
        total = 0
        while deleted := await store.delete_expired(CUTOFF, 7):
            total += deleted
        return total

    totals = await asyncio.gather(delete_all(first), delete_all(second))
    assert sum(totals) == 60
    for store in (first, second):
        stats = await store.stats()
        assert (stats.expired, stats.stored_events) == (60, 0)


async def test_the_store_reports_its_size(store: DedupStore) -> None:
    empty = await store.stats()
    assert empty.stored_events == 0 and empty.store_bytes > 0
    # Random text, which neither store compresses much (PostgreSQL compresses long values).
    await store.store_events(
        [make_event(f"e{n}", payload={"pad": os.urandom(1000).hex()}) for n in range(500)]
    )
    full = await store.stats()
    assert full.stored_events == 500
    assert full.store_bytes > empty.store_bytes + 500 * 1000
