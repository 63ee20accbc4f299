"""The SQLite store. All SQL of the project lives here.

The row in ``events`` keyed by ``(topic, event_id)`` *is* the dedup record: an event is stored
when its row is inserted, and a delivery whose row already exists is a duplicate. The counters
move in the same transaction as the rows they count, so ``received == unique_processed +
duplicate_dropped`` holds after any crash.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from aggregator.events import Event

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    timestamp    TEXT NOT NULL,
    source       TEXT NOT NULL,
    payload      TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE INDEX IF NOT EXISTS events_topic_seq ON events (topic, seq);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topic_counts (
    topic        TEXT PRIMARY KEY,
    unique_count INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES
    ('received', 0), ('unique_processed', 0), ('duplicate_dropped', 0), ('dead_lettered', 0);
"""

_BUMP_COUNTER = "UPDATE counters SET value = value + ? WHERE name = ?"


@dataclass(frozen=True)
class StoreResult:
    """What one batch did: the events newly stored and the ones that were duplicates."""

    stored: list[Event]
    duplicates: list[Event]


@dataclass(frozen=True)
class Stats:
    received: int
    unique_processed: int
    duplicate_dropped: int
    dead_lettered: int
    topics: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    topic: str
    event_id: str
    timestamp: str
    source: str
    payload: dict[str, Any]
    processed_at: str


async def _has_schema(connection: aiosqlite.Connection) -> bool:
    rows = await connection.execute_fetchall(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('events', 'counters', 'topic_counts')"
    )
    if next(iter(rows))[0] != 3:
        return False
    counters = await connection.execute_fetchall("SELECT count(*) FROM counters")
    return bool(next(iter(counters))[0] == 4)


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


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class DedupStore:
    """One SQLite file in WAL mode; the worker writes, the API reads, both through this class."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        # One connection runs one transaction at a time; concurrent callers (API requests, or
        # overlapping batches) take turns instead of nesting BEGINs.
        self._transaction = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = 5000) -> DedupStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            await _use_wal(connection, path, busy_timeout_ms)
            # FULL: a commit is on disk before the worker acks, even across a power loss.
            await connection.execute("PRAGMA synchronous = FULL")
            # Only a new file needs the schema: opening an existing store takes no write lock,
            # so the API or a second worker can open it while a writer holds the lock. Several
            # processes opening a new file at once take turns on the write lock (IMMEDIATE
            # waits on the busy timeout) and the IF NOT EXISTS / OR IGNORE make the later ones
            # no-ops.
            if not await _has_schema(connection):
                await connection.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nCOMMIT;")
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self._db.execute_fetchall("SELECT 1 FROM counters LIMIT 1")

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        """Insert the events not stored yet and count everything, in one transaction.

        Within the batch and against the table, the first occurrence of ``(topic, event_id)``
        wins; every later one is a duplicate whatever its payload.
        """
        if not events:
            return StoreResult([], [])
        first: dict[tuple[str, str], Event] = {}
        duplicates: list[Event] = []
        for event in events:
            if event.key in first:
                duplicates.append(event)
            else:
                first[event.key] = event

        async with self._write():
            # Under BEGIN IMMEDIATE this connection is the only writer, so the rows read here
            # cannot change before the insert below.
            existing = await self._existing_keys(list(first))
            stored = [event for key, event in first.items() if key not in existing]
            duplicates.extend(event for key, event in first.items() if key in existing)
            processed_at = _utc_now()
            cursor = await self._db.executemany(
                "INSERT INTO events (topic, event_id, timestamp, source, payload, processed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.topic,
                        e.event_id,
                        e.timestamp,
                        e.source,
                        orjson.dumps(e.payload).decode(),
                        processed_at,
                    )
                    for e in stored
                ],
            )
            await cursor.close()
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
        async with self._write():
            await self._db.execute(_BUMP_COUNTER, (count, "dead_lettered"))

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[None]:
        """One write transaction: this connection's turn, BEGIN IMMEDIATE, COMMIT or ROLLBACK."""
        async with self._transaction:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self._db.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise

    async def stats(self) -> Stats:
        # One read transaction: the counters and topic counts come from the same snapshot.
        async with self._transaction:
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
        self, *, after_seq: int, limit: int, topic: str | None = None
    ) -> tuple[list[StoredEvent], bool]:
        """Up to ``limit`` events after ``after_seq``, in processing order, and if more follow."""
        columns = "seq, topic, event_id, timestamp, source, payload, processed_at"
        if topic is None:
            rows = await self._db.execute_fetchall(
                f"SELECT {columns} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit + 1),
            )
        else:
            rows = await self._db.execute_fetchall(
                f"SELECT {columns} FROM events WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, after_seq, limit + 1),
            )
        rows = list(rows)
        page = [
            StoredEvent(
                seq=int(row[0]),
                topic=str(row[1]),
                event_id=str(row[2]),
                timestamp=str(row[3]),
                source=str(row[4]),
                payload=orjson.loads(row[5]),
                processed_at=str(row[6]),
            )
            for row in rows[:limit]
        ]
        return page, len(rows) > limit

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                await self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                # The original error is the one worth raising; SQLite rolls the transaction
                # back when the connection closes.
                log.warning("rollback failed: %s", exc)
