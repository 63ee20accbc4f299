"""PostgreSQL going away under a running store, and coming back: no restart, no reopen.

On a private server of the test's own (tests/support/private_postgres.py), never the shared one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from aggregator.errors import StoreUnavailable
from aggregator.store import PostgresStore
from aggregator.store import postgres as postgres_store
from tests.support.private_postgres import PrivatePostgres
from tests.support.stores import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

POOL_SIZE = 3


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


async def every_call_fails_unavailable(store: PostgresStore) -> None:
    with pytest.raises(StoreUnavailable):
        await store.store_events([make_event("while-down")])
    with pytest.raises(StoreUnavailable):
        await store.check_writable()
    with pytest.raises(StoreUnavailable):
        await store.add_dead_lettered(1)
    with pytest.raises(StoreUnavailable):
        await store.stats()
    with pytest.raises(StoreUnavailable):
        await store.events_after(limit=10)
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def answers(store: PostgresStore) -> bool:
    try:
        await store.ping()
    except StoreUnavailable:
        return False
    return True


@pytest.mark.parametrize("how", ["stop", "kill9"])
async def test_a_server_that_goes_away_is_unavailable_then_used_again(
    server: PrivatePostgres, how: str
) -> None:
    store = await PostgresStore.open(server.url, pool_size=POOL_SIZE)
    try:
        # Every connection of the pool open and idle when the server goes.
        await asyncio.gather(*(store.store_events([make_event(f"before-{i}")]) for i in range(6)))
        if how == "stop":
            await asyncio.to_thread(server.stop)
        else:
            await asyncio.to_thread(server.kill9)
        await every_call_fails_unavailable(store)

        await asyncio.to_thread(server.start)
        await eventually(lambda: answers(store), bool, what="the store to answer again")
        # No connection that died is handed out again: a pool's worth of calls at once, twice,
        # each succeeds the first time.
        for round_ in range(2):
            await asyncio.gather(
                *(
                    store.store_events([make_event(f"after-{round_}-{i}")])
                    for i in range(POOL_SIZE * 2)
                )
            )
        stats = await store.stats()
        assert (stats.received, stats.unique_processed, stats.dead_lettered) == (18, 18, 0)
        page, more = await store.events_after(limit=100)
        assert len(page) == 18 and more is False
    finally:
        await store.close()


async def test_a_server_that_stops_answering_is_unavailable_within_the_timeouts(
    server: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CONNECT_TIMEOUT_S", "ACQUIRE_TIMEOUT_S", "COMMAND_TIMEOUT_S"):
        monkeypatch.setattr(postgres_store, name, 1.0)
    store = await PostgresStore.open(server.url, pool_size=POOL_SIZE)
    try:
        await asyncio.gather(*(store.store_events([make_event(f"before-{i}")]) for i in range(6)))
        with server.frozen():
            # Open connections that answer nothing: each call gives up, none hangs. The ones it
            # gave up on are closed, so the next call opens a new one (which times out too).
            for i in range(3):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="TimeoutError"):
                    await store.store_events([make_event(f"frozen-{i}")])
                assert time.monotonic() - started < 5
        await eventually(lambda: answers(store), bool, what="the store to answer again")
        # A statement given up on may still have committed once the server went on (its
        # outcome was unknown): the worker's retry, as here, then finds a duplicate.
        retried = await store.store_events([make_event(f"frozen-{i}") for i in range(3)])
        await asyncio.gather(*(store.store_events([make_event(f"after-{i}")]) for i in range(6)))
        stats = await store.stats()
        assert stats.unique_processed == 15
        assert stats.received == 15 + len(retried.duplicates)
        assert stats.received == stats.unique_processed + stats.duplicate_dropped
    finally:
        await store.close()


async def test_the_first_open_waits_for_a_server_that_starts_late(server: PrivatePostgres) -> None:
    await asyncio.to_thread(server.stop)
    opening = asyncio.create_task(PostgresStore.open(server.url, connect_timeout_s=60))
    await asyncio.to_thread(server.start)
    store = await asyncio.wait_for(opening, 60)
    try:
        await store.ping()
    finally:
        await store.close()
