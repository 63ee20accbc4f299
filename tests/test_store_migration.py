"""A store written by the previous release, opened by this one, on each backend.

The previous schema (SQLite steps 1-2, PostgreSQL steps 1-2) with rows in it: opening it adds
the timestamp as an instant, the full-text index and the seen keys, all filled for the rows
already there, so old events are found by time and text, and stay duplicates once expired.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg

from aggregator.store import EventQuery, sqlite_schema
from aggregator.store import postgres_schema as pg_schema
from aggregator.timestamps import utc_micros
from tests.support.stores import StoreFactory, make_event

# (event_id, timestamp, source, payload JSON) as the previous release stored them.
OLD_ROWS = [
    ("o-1", "2025-05-01T10:00:00+02:00", "svc-a", '{"msg": "disk full", "n": 1}'),
    ("o-2", "2025-05-01T08:30:00Z", "svc-b", '{"msg": "all good\\nreally"}'),
    ("o-3", "2025-W18-4T09:00:00-01:00", "svc-a", '{"msg": "retrying"}'),  # a week date
]


def _seed_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as old:
        for step in sqlite_schema.STEPS[:2]:
            assert isinstance(step, str)
            old.executescript(step)
        old.execute("PRAGMA user_version = 2")
        for event_id, timestamp, source, payload in OLD_ROWS:
            old.execute(
                "INSERT INTO events"
                " (topic, event_id, timestamp, source, payload, processed_at, publisher)"
                " VALUES ('app.log', ?, ?, ?, ?, '2025-05-01T10:00:01Z', 'old-key')",
                (event_id, timestamp, source, payload),
            )
        old.execute("UPDATE counters SET value = 3 WHERE name IN ('received', 'unique_processed')")
        old.execute("INSERT INTO topic_counts VALUES ('app.log', 3)")


async def _seed_postgres(url: str) -> None:
    old = await asyncpg.connect(url)
    try:
        await old.execute("CREATE TABLE schema_version (version integer PRIMARY KEY)")
        for number, step in enumerate(pg_schema.MIGRATIONS[:2], start=1):
            assert isinstance(step, str)
            await old.execute(step)
            await old.execute("INSERT INTO schema_version VALUES ($1)", number)
        for index, (event_id, timestamp, source, payload) in enumerate(OLD_ROWS):
            await old.execute(
                "INSERT INTO events (topic, event_id, timestamp, source, payload, batch_index,"
                " publisher) VALUES ('app.log', $1, $2, $3, $4::jsonb, $5, 'old-key')",
                event_id,
                timestamp,
                source,
                payload,
                index,
            )
        await old.execute(
            "INSERT INTO counters VALUES (0, 'received', 3), (0, 'unique_processed', 3);"
            " INSERT INTO topic_counts VALUES (0, 'app.log', 3)"
        )
    finally:
        await old.close()


async def test_a_store_of_the_previous_release_gets_everything_filled_in(
    stores: StoreFactory,
) -> None:
    if stores.backend == "sqlite":
        assert isinstance(stores.target, Path)
        _seed_sqlite(stores.target)
    else:
        await _seed_postgres(str(stores.target))
    store = await stores.open()

    async def found(**query: Any) -> list[str]:
        page, _ = await store.events_after(query=EventQuery(**query), limit=10)
        return [e.event_id for e in page]

    assert await found() == ["o-1", "o-2", "o-3"]
    # o-1 is 08:00Z, o-2 08:30Z, o-3 (Thursday of week 18, 2025-05-01) 10:00Z.
    assert await found(since_us=utc_micros("2025-05-01T08:15:00Z")) == ["o-2", "o-3"]
    assert await found(until_us=utc_micros("2025-05-01T08:15:00Z")) == ["o-1"]
    assert await found(text="disk") == ["o-1"]
    assert await found(text="really") == ["o-2"]
    assert await found(text="svc") == ["o-1", "o-2", "o-3"]
    assert await found(source="svc-a", newest_first=True) == ["o-3", "o-1"]

    # The old keys are seen keys: stored again, expired, stored again, they stay duplicates.
    result = await store.store_events([make_event("o-1"), make_event("new")])
    assert ([e.event_id for e in result.stored], len(result.duplicates)) == (["new"], 1)
    assert await store.delete_expired(utc_micros("2026-01-01T00:00:00Z"), 100) == 3
    result = await store.store_events([make_event(event_id) for event_id, *_ in OLD_ROWS])
    assert (result.stored, len(result.duplicates)) == ([], 3)
    stats = await store.stats()
    assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (8, 4, 4)
    assert (stats.expired, stats.stored_events, stats.topics) == (3, 1, {"app.log": 4})

    # Opening it again applies nothing twice.
    await store.close()
    again = await stores.open()
    assert (await again.stats()).stored_events == 1
