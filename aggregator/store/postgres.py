"""The PostgreSQL store: for workers on several hosts, or a database that is run for you.

Each batch is one statement, so one round trip and its own transaction: it inserts the new rows
(``ON CONFLICT DO NOTHING RETURNING`` says which were new) and moves the counters. Workers
never deadlock on the unique index because every batch takes its keys in one order (sorted,
each once). A server that goes away is "store unavailable" until it answers again; the pool
then opens fresh connections, no restart needed. The statements are :mod:`.postgres_sql`, the
schema :mod:`.postgres_schema`, the error translation :mod:`.postgres_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Self, TypeAlias

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from aggregator.errors import StoreUnavailable
from aggregator.events import Event
from aggregator.store import postgres_sql as sql
from aggregator.store.base import (
    EVERYTHING,
    PAGE_BYTES,
    EventQuery,
    Position,
    Stats,
    StoredEvent,
    StoreResult,
    canary_event,
    key_digest,
)
from aggregator.store.postgres_errors import DRIVER_ERRORS, translate
from aggregator.store.postgres_schema import ServerTooOld, migrate
from aggregator.timestamps import utc_micros
from aggregator.urls import redacted

log = logging.getLogger(__name__)

# asyncpg's classes are generic in its stubs only.
_Connection: TypeAlias = "PoolConnectionProxy[Record]"

# Counter rows per name and per topic. Each store instance writes one slot, chosen at random,
# so concurrent workers rarely queue on a counter row (and never deadlock: same order).
COUNTER_SLOTS = 64

# A server that does not answer within these is unavailable (not a hang): a new connection,
# a free connection from the pool, one statement.
CONNECT_TIMEOUT_S = 10.0
ACQUIRE_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 5.0

# Rows fetched per round trip while a page is read: the byte budget is checked between them.
PAGE_FETCH_ROWS = 16

_CLOSE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *DRIVER_ERRORS)
_COUNTERS = ("received", "unique_processed", "duplicate_dropped", "dead_lettered", "expired")


class PostgresStore:
    """The :class:`~aggregator.store.base.DedupStore` on a PostgreSQL database (13 or later)."""

    def __init__(self, pool: asyncpg.Pool[Record], *, where: str, slot: int) -> None:
        self._pool = pool
        self._where = where
        self._slot = slot

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 4, connect_timeout_s: float = 0.0) -> Self:
        """Connect and migrate; a server that does not answer yet is retried for up to
        ``connect_timeout_s`` (containers start in any order), then StoreUnavailable."""
        where = redacted(url)
        started = time.monotonic()
        delay = 0.2
        while True:
            try:
                pool = await _open_pool(url, pool_size)
                break
            except ServerTooOld:
                raise
            except StoreUnavailable as exc:
                waited = time.monotonic() - started
                if waited + delay > connect_timeout_s:
                    raise StoreUnavailable(f"cannot open the store at {where}: {exc}") from exc
                log.warning("store at %s not available: %s; retrying in %.1fs", where, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        slot = random.randrange(COUNTER_SLOTS)
        log.info("store: PostgreSQL at %s (pool of %d, counter slot %d)", where, pool_size, slot)
        return cls(pool, where=where, slot=slot)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._pool.close()
        except _CLOSE_ERRORS as exc:
            log.warning("closing the pool to %s failed: %r; terminating it", self._where, exc)
            self._pool.terminate()

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval(sql.PING)

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        if not events:
            return StoreResult([], [])
        async with self._connection() as connection:
            return await self._insert(connection, events)

    async def check_writable(self) -> None:
        async with self._connection() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                await self._insert(connection, [canary_event()])
            finally:
                await transaction.rollback()

    async def _insert(self, connection: _Connection, events: Sequence[Event]) -> StoreResult:
        first: dict[tuple[str, str], Event] = {}
        duplicates: list[Event] = []
        for event in events:
            if event.key in first:
                duplicates.append(event)
            else:
                first[event.key] = event
        place = {key: index for index, key in enumerate(first)}
        # Sorted by digest: the order in which concurrent batches take seen_keys's index.
        digests = sorted((key_digest(*key), key) for key in first)
        keys = [key for _, key in digests]
        batch = [first[key] for key in keys]
        rows = await connection.fetch(
            sql.STORE_BATCH,
            self._slot,
            [e.topic for e in batch],
            [e.event_id for e in batch],
            [e.timestamp for e in batch],
            [e.source for e in batch],
            [e.payload_json.decode() for e in batch],
            [place[key] for key in keys],
            len(events),
            [e.publisher for e in batch],
            [digest for digest, _ in digests],
            [utc_micros(e.timestamp) for e in batch],
        )
        new = {(str(row[0]), str(row[1])) for row in rows}
        stored = [event for key, event in first.items() if key in new]
        duplicates.extend(event for key, event in first.items() if key not in new)
        return StoreResult(stored, duplicates)

    async def add_dead_lettered(self, count: int) -> None:
        async with self._connection() as connection:
            await connection.execute(sql.ADD_COUNTER, self._slot, "dead_lettered", count)

    async def delete_expired(self, before_us: int, limit: int) -> int:
        async with self._connection() as connection:
            deleted = await connection.fetchval(sql.DELETE_EXPIRED, self._slot, before_us, limit)
        return int(deleted)

    async def stats(self) -> Stats:
        async with self._connection() as connection:
            # One snapshot for both: a batch committing in between is in both sums or neither.
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                rows = await connection.fetch(sql.COUNTER_SUMS)
                topics = await connection.fetch(sql.TOPIC_SUMS)
                size = await connection.fetchval(sql.STORE_BYTES)
        counters = dict.fromkeys(_COUNTERS, 0) | {str(r[0]): int(r[1]) for r in rows}
        return Stats(
            received=counters["received"],
            unique_processed=counters["unique_processed"],
            duplicate_dropped=counters["duplicate_dropped"],
            dead_lettered=counters["dead_lettered"],
            topics={str(r[0]): int(r[1]) for r in topics},
            expired=counters["expired"],
            # From the counters, which move with the rows: count(*) reads the whole table.
            stored_events=counters["unique_processed"] - counters["expired"],
            store_bytes=int(size),
        )

    async def get_event(self, topic: str, event_id: str) -> StoredEvent | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(sql.GET_EVENT, topic, event_id)
        return None if row is None else _stored_event(row)

    async def events_after(
        self,
        *,
        query: EventQuery = EVERYTHING,
        after: Position | None = None,
        limit: int,
        max_bytes: int = PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool]:
        page: list[StoredEvent] = []
        size = 0
        async with (
            self._connection() as connection,
            connection.transaction(isolation="read_committed", readonly=True),
        ):
            horizon = str(await connection.fetchval(sql.HORIZON))
            statement, parameters = sql.page_query(query, after, horizon, limit + 1)
            # A few rows per round trip, so a page of large events stops at max_bytes without
            # having read the rest.
            async for row in connection.cursor(statement, *parameters, prefetch=PAGE_FETCH_ROWS):
                if len(page) == limit or (page and size >= max_bytes):
                    return page, True
                event = _stored_event(row)
                size += len(event.payload_json)
                page.append(event)
        return page, False

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        """A pooled connection; driver errors raised as the project's own.

        A connection that failed with the store unavailable is closed rather than put back:
        the pool opens a fresh one on a later acquire, so none that died is handed out again.
        """
        try:
            connection = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        try:
            yield connection
        except DRIVER_ERRORS as exc:
            error = translate(exc)
            if isinstance(error, StoreUnavailable):
                connection.terminate()
            raise error from exc
        finally:
            try:
                await self._pool.release(connection)
            except DRIVER_ERRORS as exc:
                log.warning("returning a connection to the pool failed: %r", exc)


async def _open_pool(url: str, pool_size: int) -> asyncpg.Pool[Record]:
    """A pool with the schema migrated through its first connection; errors translated."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=0,
            max_size=pool_size,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings={
                "application_name": "aggregator",
                # A worker whose host is cut off mid-transaction holds row locks that another
                # worker's insert of the same keys waits on: these bound how long, by letting
                # the server notice a silent client (keepalives) or an abandoned transaction.
                "idle_in_transaction_session_timeout": "60s",
                "tcp_keepalives_idle": "30",
                "tcp_keepalives_interval": "10",
                "tcp_keepalives_count": "3",
            },
        )
    except DRIVER_ERRORS as exc:
        raise translate(exc) from exc
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as connection:
            await migrate(connection)
    except BaseException as exc:
        pool.terminate()
        if isinstance(exc, DRIVER_ERRORS):
            raise translate(exc) from exc
        raise
    return pool


def _stored_event(row: Record) -> StoredEvent:
    """A row of the columns of postgres_sql's reads as the store returns it."""
    return StoredEvent(
        position=(int(row[0]), int(row[1])),
        topic=str(row[2]),
        event_id=str(row[3]),
        timestamp=str(row[4]),
        source=str(row[5]),
        payload_json=str(row[6]).encode(),
        processed_at=_utc_text(row[7]),
        publisher=None if row[8] is None else str(row[8]),
    )


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
