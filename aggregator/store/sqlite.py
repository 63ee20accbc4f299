"""The SQLite store, the embedded default. All of its SQL lives here.

One file in WAL mode: the worker writes, the API reads, several workers on one host take turns on
the write lock. The file is watched: deleted or replaced under a running process, it is "store
unavailable" (loudly) rather than a place to commit into the void.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

import aiosqlite

from aggregator.errors import RowRefused, StoreError, StoreUnavailable
from aggregator.events import Event
from aggregator.store.base import (
    PAGE_BYTES,
    START,
    Position,
    Stats,
    StoredEvent,
    StoreResult,
    canary_event,
    utc_now,
)
from aggregator.store.sqlite_schema import migrate

log = logging.getLogger(__name__)

_MAX_SEQ = 2**63 - 1
_BUMP_COUNTER = "UPDATE counters SET value = value + ? WHERE name = ?"
_COLUMNS = "seq, topic, event_id, timestamp, source, payload, processed_at, publisher"

# Failures of the store as a whole (SQLite's primary result codes): wait and retry. Anything
# else SQLite raises is about the statement's rows (a constraint, a type, a size).
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def translate(exc: sqlite3.Error) -> StoreError:
    """The project's exception for a driver error: unavailable, or a row refused."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # No result code: the connection or the module itself failed (closed, misuse).
        return StoreUnavailable(f"SQLite: {exc!r}")
    if code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite: {exc} ({getattr(exc, 'sqlite_errorname', code)})")
    return RowRefused(f"SQLite refused the rows: {exc} ({getattr(exc, 'sqlite_errorname', code)})")


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


async def _connect(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await _use_wal(connection, path, busy_timeout_ms)
        # FULL: a commit is on disk before the worker acks, even across a power loss.
        await connection.execute("PRAGMA synchronous = FULL")
        await migrate(connection)
    except BaseException:
        await connection.close()
        raise
    return connection


async def _use_wal(connection: aiosqlite.Connection, path: Path, busy_timeout_ms: int) -> None:
    """Put the file in WAL mode (it stays so: only a new file changes), waiting out others.

    Leaving the rollback journal needs every other connection off the file, and SQLite answers
    that "database is locked" at once instead of waiting on the busy timeout; so several
    processes opening a new store together (``--workers N``, or containers on a fresh volume)
    would fail at random. This waits for its turn here, within the same bound.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.005
    while True:
        try:
            rows = await connection.execute_fetchall("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
            continue
        mode = str(next(iter(rows))[0]).lower()
        if mode != "wal":
            # Readers beside one writer, and so several processes on one file, rest on WAL.
            raise sqlite3.OperationalError(f"{path}: SQLite kept journal_mode={mode}, not WAL")
        return


class SqliteStore:
    """The :class:`~aggregator.store.base.DedupStore` on one SQLite file."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, busy_timeout_ms: int) -> None:
        self._db = connection
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._identity = _identity(path)
        # One connection runs one transaction at a time; concurrent callers (API requests, or
        # overlapping batches) take turns instead of nesting BEGINs.
        self._transaction = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = 5000) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = await _connect(path, busy_timeout_ms)
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
        # Under BEGIN IMMEDIATE this connection is the only writer, so the rows read here cannot
        # change before the insert below.
        existing = await self._existing_keys(list(first))
        stored = [event for key, event in first.items() if key not in existing]
        duplicates.extend(event for key, event in first.items() if key in existing)
        processed_at = utc_now()
        await self._db.executemany(
            "INSERT INTO events"
            " (topic, event_id, timestamp, source, payload, processed_at, publisher)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.topic,
                    e.event_id,
                    e.timestamp,
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
        await self._db.executemany(
            "INSERT INTO topic_counts (topic, unique_count) VALUES (?, ?)"
            " ON CONFLICT (topic)"
            " DO UPDATE SET unique_count = unique_count + excluded.unique_count",
            list(per_topic.items()),
        )
        await self._db.executemany(
            _BUMP_COUNTER,
            [
                (len(events), "received"),
                (len(stored), "unique_processed"),
                (len(duplicates), "duplicate_dropped"),
            ],
        )
        return StoreResult(stored, duplicates)

    async def _existing_keys(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        existing: set[tuple[str, str]] = set()
        # Bound the number of SQL variables per statement well below SQLite's limit.
        for start in range(0, len(keys), 4000):
            chunk = keys[start : start + 4000]
            values = ",".join("(?, ?)" for _ in chunk)
            rows = await self._db.execute_fetchall(
                f"SELECT topic, event_id FROM events WHERE (topic, event_id) IN (VALUES {values})",
                [part for key in chunk for part in key],
            )
            existing.update((str(row[0]), str(row[1])) for row in rows)
        return existing

    async def add_dead_lettered(self, count: int) -> None:
        async with self._write(commit=True):
            await self._db.execute(_BUMP_COUNTER, (count, "dead_lettered"))

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
            finally:
                await self._db.execute("COMMIT")
        return Stats(
            received=int(counters["received"]),
            unique_processed=int(counters["unique_processed"]),
            duplicate_dropped=int(counters["duplicate_dropped"]),
            dead_lettered=int(counters["dead_lettered"]),
            topics={str(topic): int(count) for topic, count in topics},
        )

    async def events_after(
        self,
        *,
        after: Position = START,
        limit: int,
        topic: str | None = None,
        max_bytes: int = PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool]:
        # One writer at a time: row numbers are handed out in commit order, so the first half
        # of a position is always 0 here. A position of another store's making (a cursor kept
        # across a change of backend) is past every row number of this one, as it would be.
        after_seq = after[1] if after[0] == 0 else _MAX_SEQ
        where = "seq > ?" if topic is None else "topic = ? AND seq > ?"
        parameters: list[object] = [after_seq] if topic is None else [topic, after_seq]
        page: list[StoredEvent] = []
        size = 0
        async with self._transaction, self._translated():
            # Rows are read a few at a time, so a page of large events stops at max_bytes
            # without having read the rest.
            async with self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT ?",
                [*parameters, limit + 1],
            ) as cursor:
                cursor.arraysize = 16
                async for row in cursor:
                    if len(page) == limit or (page and size >= max_bytes):
                        return page, True
                    payload = str(row[5]).encode()
                    size += len(payload)
                    page.append(
                        StoredEvent(
                            position=(0, int(row[0])),
                            topic=str(row[1]),
                            event_id=str(row[2]),
                            timestamp=str(row[3]),
                            source=str(row[4]),
                            payload_json=payload,
                            processed_at=str(row[6]),
                            publisher=None if row[7] is None else str(row[7]),
                        )
                    )
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
        now = _identity(self._path)
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
            connection = await _connect(self._path, self._busy_timeout_ms)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        old, self._db, self._identity = self._db, connection, _identity(self._path)
        await old.close()

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                await self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                # The original error is the one worth raising; SQLite rolls the transaction
                # back when the connection closes.
                log.warning("rollback failed: %s", exc)
