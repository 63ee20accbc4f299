"""The SQLite store's schema, versioned in ``PRAGMA user_version``: made or brought up to date
when a process opens the file.

A step is never edited once released: a change is a new step. Opening a file that is up to date
takes no write lock, so the API or a second worker can open it while a writer holds the lock;
several processes bringing one file up to date take turns on the write lock (BEGIN IMMEDIATE
waits on the busy timeout) and re-read the version under it, so each step runs once.
"""

from __future__ import annotations

import logging

import aiosqlite

log = logging.getLogger(__name__)

# Step 1 is the schema as first released (files of that time have user_version 0).
_STEP_1 = """
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

STEPS: tuple[str, ...] = (
    _STEP_1,
    # 2. Who published each event: the API key's name (NULL without keys, or over AMQP).
    "ALTER TABLE events ADD COLUMN publisher TEXT;",
)


async def _version(connection: aiosqlite.Connection) -> int:
    rows = list(await connection.execute_fetchall("PRAGMA user_version"))
    version = int(rows[0][0])
    if version == 0:
        # A file of the first release has the tables but no version; a new file has neither.
        tables = list(
            await connection.execute_fetchall(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            )
        )
        return 1 if tables[0][0] else 0
    return version


async def migrate(connection: aiosqlite.Connection) -> None:
    """Make the schema or bring it up to date (see the module docstring)."""
    if await _version(connection) >= len(STEPS):
        return
    await connection.execute("BEGIN IMMEDIATE")
    try:
        current = await _version(connection)
        for number, step in enumerate(STEPS[current:], start=current + 1):
            for statement in _statements(step):
                await connection.execute(statement)
            log.info("SQLite store: applied schema step %d", number)
        await connection.execute(f"PRAGMA user_version = {len(STEPS)}")
        await connection.execute("COMMIT")
    except BaseException:
        await connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    # The steps are plain DDL and INSERTs with no semicolon inside a string: split on ";".
    return [part.strip() for part in script.split(";") if part.strip()]
