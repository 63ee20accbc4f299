"""The SQLite store's schema, versioned in ``PRAGMA user_version``: made or brought up to date
when a process opens the file.

A step is never edited once released: a change is a new step. Opening a file that is up to date
takes no write lock, so the API or a second worker can open it while a writer holds the lock;
several processes bringing one file up to date take turns on the write lock (BEGIN IMMEDIATE
waits on the busy timeout) and re-read the version under it, so each step runs once.
"""

from __future__ import annotations

import logging
import sqlite3

import aiosqlite

from aggregator.errors import StoreUnavailable
from aggregator.store.base import key_digest
from aggregator.timestamps import utc_micros_or_none

log = logging.getLogger(__name__)

# The words of an event FTS5 indexes: the payload's keys and scalar values, decoded (an escaped
# line break in a JSON string separates two words; in the JSON text it would glue an "n" to the
# next one), as PostgreSQL's jsonb_to_tsvector(..., '"all"') reads them; and the source, a
# column of its own. Triggers keep the index in step with the table in the writing transaction
# itself, whoever writes; a contentless index must be told the words of a deleted row, which
# this recomputes from the row.
_SEARCH_WORDS = """(SELECT group_concat(
    iif(typeof(key) = 'text', key, '') || ' ' ||
    CASE type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
              WHEN 'object' THEN '' WHEN 'array' THEN '' WHEN 'null' THEN '' ELSE atom END,
    ' ') FROM json_tree({payload}))"""

# The full-text index and what keeps it up to date as events are inserted: every new event
# pays for it in the write (``make bench`` measures a raw pipeline with it and without).
SEARCH_INDEX = (
    "CREATE VIRTUAL TABLE events_search USING fts5"
    " (source, words, content = '', tokenize = 'unicode61 remove_diacritics 0')",
    "CREATE TRIGGER events_search_insert AFTER INSERT ON events BEGIN"
    " INSERT INTO events_search (rowid, source, words)"
    f" VALUES (new.seq, new.source, {_SEARCH_WORDS.format(payload='new.payload')}); END",
)

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

# 3. Finding events. Existing rows are backfilled by the same Python function the inserts use
# (agg_utc_micros, registered by migrate()); the triggers and the indexes use SQL alone, so any
# SQLite client can still write the file.
_STEP_3 = (
    # The timestamp as an instant (aggregator/timestamps.py): since/until and retention.
    "ALTER TABLE events ADD COLUMN timestamp_us INTEGER",
    "UPDATE events SET timestamp_us = agg_utc_micros(timestamp)",
    "CREATE INDEX events_timestamp ON events (timestamp_us)",
    "CREATE INDEX events_source_seq ON events (source, seq)",
    # Full text over source and payload (q); rowid = seq.
    SEARCH_INDEX[0],
    "INSERT INTO events_search (rowid, source, words)"
    f" SELECT seq, source, {_SEARCH_WORDS.format(payload='payload')} FROM events",
    SEARCH_INDEX[1],
    "CREATE TRIGGER events_search_delete AFTER DELETE ON events BEGIN"
    " INSERT INTO events_search (events_search, rowid, source, words)"
    f" VALUES ('delete', old.seq, old.source, {_SEARCH_WORDS.format(payload='old.payload')}); END",
)

# 4. Keeping events for a while, and their keys for good: the digest of every key ever stored
# (agg_key_digest, as the inserts compute it) is the dedup record from now on, so it stays when
# retention deletes the event. And the count of those deletions.
_STEP_4 = (
    "CREATE TABLE seen_keys (key BLOB PRIMARY KEY) WITHOUT ROWID",
    "INSERT OR IGNORE INTO seen_keys (key) SELECT agg_key_digest(topic, event_id) FROM events",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('expired', 0)",
)

# A step is a script (split on ";") or, when a statement holds a ";" itself, its statements.
STEPS: tuple[str | tuple[str, ...], ...] = (
    _STEP_1,
    # 2. Who published each event: the API key's name (NULL without keys, or over AMQP).
    "ALTER TABLE events ADD COLUMN publisher TEXT;",
    _STEP_3,
    _STEP_4,
)


# The compile option that says this SQLite library has FTS5.
FTS5_OPTION = "ENABLE_FTS5"


class FTS5Missing(StoreUnavailable):
    """This Python's SQLite cannot search text: no wait will change that."""


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
    # Every time, not only while migrating: the triggers of step 3 need FTS5 on every insert.
    await _check_fts5(connection)
    if await _version(connection) >= len(STEPS):
        return
    await connection.create_function("agg_utc_micros", 1, utc_micros_or_none, deterministic=True)
    await connection.create_function("agg_key_digest", 2, key_digest, deterministic=True)
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


async def _check_fts5(connection: aiosqlite.Connection) -> None:
    """Fail at start, saying what is missing, where this Python's SQLite lacks FTS5."""
    rows = list(await connection.execute_fetchall("PRAGMA compile_options"))
    if FTS5_OPTION not in {str(row[0]) for row in rows}:
        raise FTS5Missing(
            f"the SQLite store needs FTS5 (full-text search), which the SQLite library of this"
            f" Python ({sqlite3.sqlite_version}) was built without; use a Python whose sqlite3"
            f" has it (python.org and Debian builds do), or the PostgreSQL store"
        )


def _statements(step: str | tuple[str, ...]) -> list[str]:
    if isinstance(step, tuple):
        return list(step)
    # A script of plain DDL and INSERTs with no semicolon inside a string: split on ";".
    return [part.strip() for part in step.split(";") if part.strip()]
