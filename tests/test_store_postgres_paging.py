"""Paging through PostgreSQL while workers write: no event is ever skipped, or seen twice.

A reader that keeps its place by a row number can miss a row: a transaction takes number 5,
another takes 6 and commits, the reader returns 6 and moves past it, then 5 commits behind
the reader's back. The store's positions are (writing transaction, place in batch), and a
page holds only rows of transactions below its snapshot's xmin, every one of them ended.
Newest first, a reader starts below that horizon and moves down, where nothing can commit any
more.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg

from aggregator.store import START, DedupStore, EventQuery, Position, PostgresStore, StoredEvent
from aggregator.store.base import utc_now
from tests.support.stores import make_event
from tests.support.waiting import eventually

WRITERS = 8
BATCHES_PER_WRITER = 10


async def read_from(store: DedupStore, after: Position, limit: int = 100) -> list[StoredEvent]:
    """Every event after ``after`` the store shows now, page by page."""
    events: list[StoredEvent] = []
    while True:
        page, more = await store.events_after(after=after, limit=limit)
        events += page
        if not more:
            return events
        after = page[-1].position


async def test_a_row_that_commits_late_is_not_passed_by_the_reader(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    slow = await asyncpg.connect(pg_url)
    try:
        # A writer that began first, so its transaction id is lower, and commits last.
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(
            "INSERT INTO events (topic, event_id, timestamp, source, payload, batch_index)"
            " VALUES ('app.log', 'late', $1, 'svc', '{}', 0)",
            utc_now(),
        )
        await store.store_events([make_event("early")])
        # "early" is committed, but showing it would put the cursor past "late": not yet.
        assert await store.events_after(limit=10) == ([], False)
        await transaction.commit()
        seen = await eventually(
            lambda: read_from(store, START),
            lambda events: len(events) == 2,
            what="both rows, once every older transaction on the server has ended",
        )
        assert [e.event_id for e in seen] == ["late", "early"]
        assert seen[0].position < seen[1].position
    finally:
        await slow.close()
        await store.close()


async def test_a_transaction_in_another_database_does_not_hold_the_page_back(
    pg_url: str, pg_admin_url: str
) -> None:
    store = await PostgresStore.open(pg_url)
    elsewhere = await asyncpg.connect(pg_admin_url)  # the server's "postgres" database
    try:
        transaction = elsewhere.transaction()
        await transaction.start()
        await elsewhere.fetchval("SELECT pg_current_xact_id()")  # it has a transaction id now
        await store.store_events([make_event("a"), make_event("b")])
        page, more = await store.events_after(limit=10)
        assert ([e.event_id for e in page], more) == (["a", "b"], False)
        await transaction.rollback()
    finally:
        await elsewhere.close()
        await store.close()


async def test_a_reader_paging_beside_concurrent_writers_sees_every_row_once(
    pg_url: str,
) -> None:
    writers = [await PostgresStore.open(pg_url) for _ in range(WRITERS)]
    reader = await PostgresStore.open(pg_url)
    try:
        # Batches of very different sizes, so small ones keep committing while a large one,
        # begun earlier (a lower transaction id), is still being written.
        rng = random.Random(7)
        sizes = [rng.choice([1, 2, 5, 200]) for _ in range(WRITERS * BATCHES_PER_WRITER)]

        async def write(index: int) -> None:
            for batch in range(index, len(sizes), WRITERS):
                await writers[index].store_events(
                    [make_event(f"b{batch}-{n}", topic=f"t{n % 3}") for n in range(sizes[batch])]
                )

        writing = asyncio.gather(*(write(i) for i in range(WRITERS)))
        seen: list[StoredEvent] = []
        after = START
        # The reader keeps up with the writers, each page from the last position handed out.
        while not writing.done():
            page, _ = await reader.events_after(after=after, limit=1000)
            if page:
                seen += page
                after = page[-1].position
        await writing
        # Once every writer's transaction has ended, the rest is there to read from the cursor.
        await eventually(
            lambda: read_from(reader, START),
            lambda events: len(events) == sum(sizes),
            what="every event visible from the start",
        )
        seen += await read_from(reader, after)
        keys = [(e.topic, e.event_id) for e in seen]
        assert len(keys) == len(set(keys)), "an event was returned twice"
        expected = {
            (f"t{n % 3}", f"b{batch}-{n}") for batch, size in enumerate(sizes) for n in range(size)
        }
        assert set(keys) == expected, f"{len(expected - set(keys))} events were skipped"
        positions = [e.position for e in seen]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
    finally:
        for store in [*writers, reader]:
            await store.close()


async def test_newest_first_beside_concurrent_writers_skips_nothing_below_its_start(
    pg_url: str,
) -> None:
    writers = [await PostgresStore.open(pg_url) for _ in range(WRITERS)]
    reader = await PostgresStore.open(pg_url)
    newest_first = EventQuery(newest_first=True)
    try:
        await writers[0].store_events([make_event(f"before-{n}") for n in range(300)])

        async def write(index: int) -> None:
            for batch in range(BATCHES_PER_WRITER):
                size = 200 if batch % 3 == 0 else 2
                await writers[index].store_events(
                    [make_event(f"w{index}-{batch}-{n}") for n in range(size)]
                )

        writing = asyncio.gather(*(write(i) for i in range(WRITERS)))
        seen: list[StoredEvent] = []
        page, more = await reader.events_after(query=newest_first, limit=25)
        seen += page
        while more:
            page, more = await reader.events_after(
                query=newest_first, after=seen[-1].position, limit=25
            )
            seen += page
        await writing
        positions = [e.position for e in seen]
        assert positions == sorted(positions, reverse=True), "out of order or repeated"
        assert len(set(positions)) == len(positions)
        # Everything at or below where the reader started is there now, and it saw all of it:
        # nothing committed later landed below its first page.
        everything = await read_from(reader, START)
        below_start = {e.position for e in everything if e.position <= positions[0]}
        assert set(positions) == below_start
        assert {f"before-{n}" for n in range(300)} <= {e.event_id for e in seen}
    finally:
        for store in [*writers, reader]:
            await store.close()
