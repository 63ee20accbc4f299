"""Opening the SQLite file: WAL, a busy timeout, FULL sync, the schema up to date.

And the file's identity, by which the store notices the file deleted or replaced under it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import aiosqlite

from aggregator.store.sqlite_errors import is_busy
from aggregator.store.sqlite_schema import migrate


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; None when there is none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


async def connect(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
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
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)
            continue
        mode = str(next(iter(rows))[0]).lower()
        if mode != "wal":
            # Readers beside one writer, and so several processes on one file, rest on WAL.
            raise sqlite3.OperationalError(f"{path}: SQLite kept journal_mode={mode}, not WAL")
        return
