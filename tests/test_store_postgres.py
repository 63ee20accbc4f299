"""The PostgreSQL store's own behaviour: what a single SQLite file cannot show.

jsonb's refusals, several writers on one database at once, migrations run by processes that
start together, counters split over slots, and a first connect that finds no server. Paging
under concurrent writers is tests/test_store_postgres_paging.py; the server going away under
the store is tests/test_store_postgres_outage.py.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import asyncpg
import pytest

from aggregator.errors import RowRefused, StoreUnavailable
from aggregator.events import Event
from aggregator.store import PostgresStore
from aggregator.store import postgres_schema as schema
from tests.support.processes import free_port
from tests.support.stores import make_event


async def fetch_column(url: str, query: str) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return [row[0] for row in await connection.fetch(query)]
    finally:
        await connection.close()


async def test_what_jsonb_and_text_refuse_is_a_refused_row(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        # jsonb has no \u0000 in strings (22P05); text has no NUL byte at all (22021).
        with pytest.raises(RowRefused, match="22P05"):
            await store.store_events([make_event("ok"), make_event("x", payload={"s": "a\0b"})])
        with pytest.raises(RowRefused, match="22021"):
            await store.store_events([make_event("y", source="a\0b")])
        # Nothing of those batches stayed, and the store takes other rows: a canary, and "ok".
        assert (await store.stats()).received == 0
        await store.check_writable()
        result = await store.store_events([make_event("ok"), make_event("ok")])
        assert ([e.event_id for e in result.stored], len(result.duplicates)) == (["ok"], 1)
    finally:
        await store.close()


async def test_payloads_come_back_as_jsonb_writes_them(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        payload = {"zz": [1, 2.5, None, True], "a": {"big": 2**63 - 1, "neg": -(2**63)}, "é": "ü"}
        await store.store_events([make_event("j", payload=payload)])
        [stored], _ = await store.events_after(limit=1)
        assert stored.payload == payload  # the same values; key order is jsonb's own
        assert stored.payload_json.startswith(b'{"a": ')
    finally:
        await store.close()


async def test_concurrent_writers_never_deadlock_nor_store_twice(pg_url: str) -> None:
    stores = [await PostgresStore.open(pg_url) for _ in range(4)]
    try:
        rng = random.Random(20261124)
        batches: list[list[Event]] = []
        for _ in range(40):
            # 500 keys drawn from 3,000 in random order, plus 20 repeated inside the batch:
            # unsorted, any two batches would take shared keys in opposite orders.
            keys = rng.sample(range(3000), 500)
            keys += rng.sample(keys, 20)
            batches.append([make_event(f"k{k}", topic=f"t{k % 5}") for k in keys])
        # Four stores of four connections each: up to sixteen of these transactions at once.
        results = await asyncio.gather(
            *(stores[i % 4].store_events(batch) for i, batch in enumerate(batches))
        )
        stored = [event.key for result in results for event in result.stored]
        expected = {event.key for batch in batches for event in batch}
        assert len(stored) == len(set(stored))
        assert set(stored) == expected
        duplicates = sum(len(result.duplicates) for result in results)
        assert duplicates == 40 * 520 - len(expected)
        for store in stores:
            stats = await store.stats()
            assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (
                40 * 520,
                len(expected),
                duplicates,
            )
            assert stats.topics == dict(Counter(topic for topic, _ in expected))
        assert await fetch_column(pg_url, "SELECT count(*) FROM events") == [len(expected)]
    finally:
        for store in stores:
            await store.close()


async def test_counters_are_exact_summed_over_the_slots(pg_url: str) -> None:
    stores = [await PostgresStore.open(pg_url) for _ in range(3)]
    try:
        for i, store in enumerate(stores):
            await store.store_events([make_event(f"e{n}", topic=f"t{n % 2}") for n in range(10)])
            await store.store_events([make_event(f"s{i}-{n}") for n in range(i + 1)])
            await store.add_dead_lettered(i + 1)
        stats = await stores[0].stats()
        assert (stats.received, stats.unique_processed, stats.duplicate_dropped) == (36, 16, 20)
        assert stats.dead_lettered == 6
        assert stats.topics == {"t0": 5, "t1": 5, "app.log": 6}
        # Each store wrote rows of its own slot (three stores, at most three slots).
        slots = await fetch_column(pg_url, "SELECT DISTINCT slot FROM counters")
        assert 1 <= len(slots) <= 3
    finally:
        for store in stores:
            await store.close()


async def test_migrations_apply_once_when_five_stores_open_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(5)))
    # A release that adds a step: five processes of it start at once on the old schema.
    added = "CREATE TABLE step_two (n integer); INSERT INTO step_two VALUES (1);"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, added))
    second = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(5)))
    try:
        versions = await fetch_column(pg_url, "SELECT version FROM schema_version ORDER BY 1")
        assert versions == list(range(1, len(schema.MIGRATIONS) + 1))
        assert await fetch_column(pg_url, "SELECT n FROM step_two") == [1]
        # Every one of them works on the one schema.
        await asyncio.gather(
            *(s.store_events([make_event(str(i))]) for i, s in enumerate([*first, *second]))
        )
        assert (await first[0].stats()).unique_processed == 10
    finally:
        for store in [*first, *second]:
            await store.close()


async def test_no_server_is_unavailable_naming_it_without_its_password() -> None:
    url = f"postgresql://agg:s3cret@127.0.0.1:{free_port()}/aggregator"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore.open(url, connect_timeout_s=0)
    message = str(caught.value)
    assert "postgresql://agg:***@127.0.0.1" in message
    assert "s3cret" not in message
