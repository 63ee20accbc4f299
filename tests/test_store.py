"""The dedup store on each backend: insert, duplicates, counters, paging, persistence.

The tests taking ``store`` or ``stores`` run on SQLite and on PostgreSQL; the ones at the end
are about SQLite alone (WAL, its lock, its result codes, its file). PostgreSQL's own are in
tests/test_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aggregator.errors import RowRefused, StoreUnavailable
from aggregator.store import START, DedupStore, EventQuery, SqliteStore, sqlite_schema
from aggregator.store.sqlite_errors import translate
from aggregator.store.sqlite_schema import STEPS, FTS5Missing
from tests.support.stores import StoreFactory, make_event


async def test_first_stored_wins_and_later_ones_are_duplicates(store: DedupStore) -> None:
    first = make_event("a", payload={"v": 1})
    result = await store.store_events([first, make_event("b")])
    assert [e.event_id for e in result.stored] == ["a", "b"]
    assert result.duplicates == []

    again = make_event("a", payload={"v": 2}, source="someone-else")
    result = await store.store_events([again, make_event("c")])
    assert [e.event_id for e in result.stored] == ["c"]
    assert result.duplicates == [again]

    page, more = await store.events_after(limit=10)
    assert [e.event_id for e in page] == ["a", "b", "c"]
    assert page[0].payload == {"v": 1}  # the first stored wins whatever the later payload
    assert more is False


async def test_duplicates_inside_one_batch(store: DedupStore) -> None:
    result = await store.store_events([make_event("x"), make_event("x"), make_event("x")])
    assert len(result.stored) == 1
    assert len(result.duplicates) == 2
    stats = await store.stats()
    assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (3, 1, 2)


async def test_same_event_id_in_two_topics_is_two_events(store: DedupStore) -> None:
    result = await store.store_events([make_event("id-1", "a.b"), make_event("id-1", "c.d")])
    assert len(result.stored) == 2
    stats = await store.stats()
    assert stats.topics == {"a.b": 1, "c.d": 1}


async def test_counters_add_up(store: DedupStore) -> None:
    await store.store_events([make_event(str(i), topic=f"t{i % 3}") for i in range(30)])
    await store.store_events([make_event(str(i), topic=f"t{i % 3}") for i in range(20, 40)])
    await store.add_dead_lettered(2)
    await store.add_dead_lettered(1)
    stats = await store.stats()
    assert stats.received == 50
    assert stats.unique_processed == 40
    assert stats.duplicate_dropped == 10
    assert stats.received == stats.unique_processed + stats.duplicate_dropped
    assert stats.dead_lettered == 3
    assert sum(stats.topics.values()) == 40
    assert stats.topics == {"t0": 14, "t1": 13, "t2": 13}


async def test_paging_in_processing_order_with_topic_filter(store: DedupStore) -> None:
    for start in range(0, 25, 5):
        await store.store_events(
            [
                make_event(f"e{i:02}", topic="even" if i % 2 == 0 else "odd")
                for i in range(start, start + 5)
            ]
        )
    seen: list[str] = []
    after = START
    while True:
        page, more = await store.events_after(after=after, limit=4)
        seen += [e.event_id for e in page]
        if not more:
            break
        after = page[-1].position
    assert seen == [f"e{i:02}" for i in range(25)]

    odd, more = await store.events_after(limit=100, query=EventQuery(topic="odd"))
    assert [e.event_id for e in odd] == [f"e{i:02}" for i in range(1, 25, 2)]
    assert more is False
    exact, more = await store.events_after(limit=25)
    assert len(exact) == 25 and more is False
    empty, more = await store.events_after(limit=10, query=EventQuery(topic="none"))
    assert empty == [] and more is False


async def test_stored_fields_round_trip(store: DedupStore) -> None:
    event = make_event(
        "ü-1", topic="a.b", timestamp="2026-11-24T10:00:00.5+02:00", payload={"x": [1, {"y": None}]}
    ).published_by("billing-service")
    await store.store_events([event, make_event("anonymous")])
    [stored, anonymous], _ = await store.events_after(limit=2)
    assert (stored.topic, stored.event_id, stored.timestamp, stored.source, stored.payload) == (
        event.topic,
        event.event_id,
        event.timestamp,
        event.source,
        event.payload,
    )
    assert stored.processed_at.endswith("Z")
    assert (stored.publisher, anonymous.publisher) == ("billing-service", None)


async def test_everything_persists_across_reopen(stores: StoreFactory) -> None:
    store = await stores.open()
    await store.store_events([make_event("a"), make_event("b"), make_event("a")])
    await store.add_dead_lettered(1)
    await store.close()

    reopened = await stores.open()
    stats = await reopened.stats()
    assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (3, 2, 1)
    assert stats.dead_lettered == 1
    result = await reopened.store_events([make_event("b"), make_event("c")])
    assert [e.event_id for e in result.stored] == ["c"]
    assert [e.event_id for e in result.duplicates] == ["b"]


async def test_two_writers_never_store_an_event_twice(stores: StoreFactory) -> None:
    first = await stores.open()
    second = await stores.open()
    # Ten overlapping batches of 200 (ids 0..1099), written by two stores at once.
    batches = [[make_event(str(i)) for i in range(s, s + 200)] for s in range(0, 1000, 100)]
    writers = [first, second] * 5
    results = await asyncio.gather(
        *(w.store_events(b) for w, b in zip(writers, batches, strict=True))
    )
    stored = [e.event_id for r in results for e in r.stored]
    assert len(stored) == len(set(stored)) == 1100
    assert sum(len(r.duplicates) for r in results) == 900
    for reader in (first, second):
        stats = await reader.stats()
        assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (
            2000,
            1100,
            900,
        )


async def test_the_canary_write_leaves_nothing_behind(store: DedupStore) -> None:
    await store.check_writable()
    stats = await store.stats()
    assert (stats.received, stats.unique_processed, stats.topics) == (0, 0, {})
    assert await store.events_after(limit=10) == ([], False)


async def test_a_page_stops_at_its_byte_budget(store: DedupStore) -> None:
    big = {"blob": "x" * 10_000}
    await store.store_events([make_event(f"e{i}", payload=big) for i in range(10)])
    page, more = await store.events_after(limit=1000, max_bytes=25_000)
    assert [e.event_id for e in page] == ["e0", "e1", "e2"]
    assert more is True
    rest, more = await store.events_after(after=page[-1].position, limit=1000, max_bytes=25_000)
    assert [e.event_id for e in rest] == ["e3", "e4", "e5"]
    # One event at least, however small the budget.
    [single], more = await store.events_after(limit=1000, max_bytes=1)
    assert single.event_id == "e0" and more is True


# -- SQLite alone ------------------------------------------------------------------------------


async def test_a_new_sqlite_file_gets_its_parent_folders(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "nested" / "dir" / "agg.db")
    try:
        assert (await store.stats()).received == 0
    finally:
        await store.close()


async def test_wal_mode_lets_a_reader_see_committed_rows(tmp_path: Path) -> None:
    writer = await SqliteStore.open(tmp_path / "agg.db")
    reader = await SqliteStore.open(tmp_path / "agg.db")
    try:
        await writer.store_events([make_event("a")])
        assert (await reader.stats()).unique_processed == 1
    finally:
        await writer.close()
        await reader.close()
    with sqlite3.connect(tmp_path / "agg.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_locked_database_is_unavailable_after_the_busy_timeout(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "agg.db", busy_timeout_ms=50)
    blocker = sqlite3.connect(tmp_path / "agg.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.store_events([make_event("a")])
        blocker.execute("ROLLBACK")
        # Nothing half-written: the failed batch left no row and no count behind.
        assert (await store.stats()).received == 0
        result = await store.store_events([make_event("a")])
        assert len(result.stored) == 1
    finally:
        blocker.close()
        await store.close()


def test_driver_errors_become_the_projects_own() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    assert isinstance(translate(full), StoreUnavailable)
    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE
    assert isinstance(translate(io_error), StoreUnavailable)
    constraint = sqlite3.IntegrityError("NOT NULL constraint failed")
    constraint.sqlite_errorcode = sqlite3.SQLITE_CONSTRAINT_NOTNULL
    assert isinstance(translate(constraint), RowRefused)
    assert isinstance(translate(sqlite3.ProgrammingError("closed")), StoreUnavailable)


async def test_a_deleted_file_is_unavailable_and_a_restored_one_is_used(tmp_path: Path) -> None:
    path = tmp_path / "agg.db"
    store = await SqliteStore.open(path)
    try:
        await store.store_events([make_event("before")])
        backup = tmp_path / "backup.db"
        with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
            source.backup(target)
        for leftover in tmp_path.glob("agg.db*"):
            leftover.unlink()
        # Nothing is committed into the unlinked file, and readiness says why.
        with pytest.raises(StoreUnavailable, match="deleted"):
            await store.store_events([make_event("into-the-void")])
        with pytest.raises(StoreUnavailable, match="deleted"):
            await store.ping()
        backup.rename(path)
        await store.ping()
        result = await store.store_events([make_event("after"), make_event("before")])
        assert [e.event_id for e in result.stored] == ["after"]
        assert [e.event_id for e in result.duplicates] == ["before"]
    finally:
        await store.close()


async def test_a_store_of_the_first_release_is_brought_up_to_date(tmp_path: Path) -> None:
    """A file made before the schema had a version: its events stay, the publisher is added."""
    path = tmp_path / "old.db"
    first_release = STEPS[0]
    assert isinstance(first_release, str)
    with sqlite3.connect(path) as old:
        old.executescript(first_release)
        old.execute(
            "INSERT INTO events (topic, event_id, timestamp, source, payload, processed_at)"
            " VALUES ('t', 'old', '2026-11-24T10:00:00Z', 's', '{}', '2026-11-24T10:00:01Z')"
        )
    store = await SqliteStore.open(path)
    try:
        result = await store.store_events([make_event("new").published_by("billing")])
        assert [e.event_id for e in result.stored] == ["new"]
        page, _ = await store.events_after(limit=10)
        assert [(e.event_id, e.publisher) for e in page] == [("old", None), ("new", "billing")]
    finally:
        await store.close()
    with sqlite3.connect(path) as migrated:
        assert migrated.execute("PRAGMA user_version").fetchone() == (len(STEPS),)


async def test_a_sqlite_without_fts5_is_refused_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_schema, "FTS5_OPTION", "ENABLE_SOMETHING_ABSENT")
    with pytest.raises(FTS5Missing, match="needs FTS5 .* or the PostgreSQL store"):
        await SqliteStore.open(tmp_path / "agg.db")
