"""The SQLite store, the embedded default.

One file in WAL mode: the worker writes, the API reads, several workers on one host take turns on
the write lock. The file is watched: deleted or replaced under a running process, it is "store
unavailable" (loudly) rather than a place to commit into the void. Its statements are
:mod:`.sqlite_sql`, its schema :mod:`.sqlite_schema`, opening the file :mod:`.sqlite_connection`,
the error translation :mod:`.sqlite_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

import aiosqlite

from aggregator.errors import StoreUnavailable
from aggregator.events import Event
from aggregator.store import sqlite_sql as sql
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
    utc_now,
)
from aggregator.store.sqlite_connection import connect, identity
from aggregator.store.sqlite_errors import translate
from aggregator.timestamps import utc_micros

__all__ = ["SqliteStore", "translate"]

log = logging.getLogger(__name__)


class SqliteStore:
    """The :class:`~aggregator.store.base.DedupStore` on one SQLite file."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, busy_timeout_ms: int) -> None:
        self._db = connection
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._identity = identity(path)
        # One connection runs one transaction at a time; concurrent callers (API requests, or
        # overlapping batches) take turns instead of nesting BEGINs.
        self._transaction = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = 5000) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = await connect(path, busy_timeout_ms)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return cls(connection, path, busy_timeout_ms)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        async with self._transaction, self._translated():
            await self._db.execute_fetchall("SELECT 1 FROM counters LIMIT 1")

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        if not events:
            return StoreResult([], [])
        async with self._write(commit=True):
            return await self._insert(events)

    async def check_writable(self) -> None:
        async with self._write(commit=False):
            await self._insert([canary_event()])

    async def _insert(self, events: Sequence[Event]) -> StoreResult:
        first: dict[tuple[str, str], Event] = {}
        duplicates: list[Event] = []
        for event in events:
            if event.key in first:
                duplicates.append(event)
            else:
                first[event.key] = event
        # Under BEGIN IMMEDIATE this connection is the only writer: the keys claimed here are
        # this batch's until it commits or rolls back.
        digests = {key: key_digest(*key) for key in first}
        new = await self._claim(list(digests.values()))
        stored = [event for key, event in first.items() if digests[key] in new]
        duplicates.extend(event for key, event in first.items() if digests[key] not in new)
        processed_at = utc_now()
        await self._db.executemany(
            sql.INSERT_EVENT,
            [
                (
                    e.topic,
                    e.event_id,
                    e.timestamp,
                    utc_micros(e.timestamp),
                    e.source,
                    e.payload_json.decode(),
                    processed_at,
                    e.publisher,
                )
                for e in stored
            ],
        )
        per_topic: dict[str, int] = {}
        for event in stored:
            per_topic[event.topic] = per_topic.get(event.topic, 0) + 1
        await self._db.executemany(sql.BUMP_TOPIC, list(per_topic.items()))
        await self._db.executemany(
            sql.BUMP_COUNTER,
            [
                (len(events), "received"),
                (len(stored), "unique_processed"),
                (len(duplicates), "duplicate_dropped"),
            ],
        )
        return StoreResult(stored, duplicates)

    async def _claim(self, digests: list[bytes]) -> set[bytes]:
        """Record the key digests; the ones not seen before (one statement per 4,000 keys)."""
        new: set[bytes] = set()
        for start in range(0, len(digests), sql.MAX_VARIABLES):
            chunk = digests[start : start + sql.MAX_VARIABLES]
            rows = await self._db.execute_fetchall(sql.claim_keys(len(chunk)), chunk)
            new.update(bytes(row[0]) for row in rows)
        return new

    async def add_dead_lettered(self, count: int) -> None:
        async with self._write(commit=True):
            await self._db.execute(sql.BUMP_COUNTER, (count, "dead_lettered"))

    async def delete_expired(self, before_us: int, limit: int) -> int:
        async with self._write(commit=True):
            cursor = await self._db.execute(sql.DELETE_EXPIRED, (before_us, limit))
            deleted = max(cursor.rowcount, 0)
            await self._db.execute(sql.BUMP_COUNTER, (deleted, "expired"))
        return deleted

    async def stats(self) -> Stats:
        # One read transaction: the counters and topic counts come from the same snapshot.
        async with self._transaction, self._translated():
            await self._db.execute("BEGIN")
            try:
                rows = await self._db.execute_fetchall("SELECT name, value FROM counters")
                counters = {str(row[0]): int(row[1]) for row in rows}
                topics = await self._db.execute_fetchall(
                    "SELECT topic, unique_count FROM topic_counts ORDER BY topic"
                )
                pages = await self._db.execute_fetchall(
                    "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
                )
            finally:
                await self._db.execute("COMMIT")
        return Stats(
            received=counters["received"],
            unique_processed=counters["unique_processed"],
            duplicate_dropped=counters["duplicate_dropped"],
            dead_lettered=counters["dead_lettered"],
            topics={str(topic): int(count) for topic, count in topics},
            expired=counters["expired"],
            # From the counters, which move with the rows: count(*) reads a whole index.
            stored_events=counters["unique_processed"] - counters["expired"],
            # The file (not its WAL): pages freed by deletes stay in it, and are reused.
            store_bytes=int(next(iter(pages))[0]),
        )

    async def get_event(self, topic: str, event_id: str) -> StoredEvent | None:
        async with self._transaction, self._translated():
            rows = list(await self._db.execute_fetchall(sql.GET_EVENT, (topic, event_id)))
        return sql.stored_event(rows[0]) if rows else None

    async def events_after(
        self,
        *,
        query: EventQuery = EVERYTHING,
        after: Position | None = None,
        limit: int,
        max_bytes: int = PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool]:
        # One writer at a time: row numbers are handed out in commit order, so no row can
        # commit behind a position already handed out, in either direction (the first half of
        # a position is always 0 here).
        statement, parameters = sql.page_query(query, after, limit + 1)
        page: list[StoredEvent] = []
        size = 0
        async with self._transaction, self._translated():
            # Rows are read a few at a time, so a page of large events stops at max_bytes
            # without having read the rest.
            async with self._db.execute(statement, parameters) as cursor:
                cursor.arraysize = 16
                async for row in cursor:
                    if len(page) == limit or (page and size >= max_bytes):
                        return page, True
                    event = sql.stored_event(row)
                    size += len(event.payload_json)
                    page.append(event)
        return page, False

    @asynccontextmanager
    async def _write(self, *, commit: bool) -> AsyncIterator[None]:
        """One write transaction: this connection's turn, BEGIN IMMEDIATE, COMMIT or ROLLBACK."""
        async with self._transaction, self._translated():
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self._db.execute("COMMIT" if commit else "ROLLBACK")
            except BaseException:
                await self._rollback()
                raise

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """Check the file is still ours first; raise driver errors as the project's own."""
        await self._follow_file()
        try:
            yield
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def _follow_file(self) -> None:
        """Raise StoreUnavailable while the file we opened is gone; reopen a file put back."""
        now = identity(self._path)
        if now == self._identity:
            return
        if now is None:
            raise StoreUnavailable(
                f"the database file {self._path} was deleted under this process; nothing is"
                " committed until it is restored (or the process restarted on a new file)"
            )
        # A file is there again (restored from a backup, or recreated): use it, as a restart
        # would.
        log.warning("the database file %s was replaced; reopening it", self._path)
        try:
            connection = await connect(self._path, self._busy_timeout_ms)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        old, self._db, self._identity = self._db, connection, identity(self._path)
        await old.close()

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                await self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                # The original error is the one worth raising; SQLite rolls the transaction
                # back when the connection closes.
                log.warning("rollback failed: %s", exc)
