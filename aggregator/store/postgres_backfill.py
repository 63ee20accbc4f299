"""The PostgreSQL store's schema steps that fill new columns of existing rows from Python.

Rows written before a step get their values from the same Python functions the inserts use
(:func:`aggregator.timestamps.utc_micros`, :func:`aggregator.store.base.key_digest`), not from
SQL look-alikes: PostgreSQL's timestamp parser and Python's differ at the edges (week dates,
for one), and a digest computed two ways would make old events look new to the dedup. The
rows are read in chunks in key order (no cursor left open, which would keep the table "in use"
for a CREATE INDEX after it), so a migration's memory does not grow with the table; indexes are
built after the backfill, once, rather than updated row by row. Each step runs inside the
migration's transaction (see :mod:`.postgres_schema`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TypeAlias

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from aggregator.store.base import key_digest
from aggregator.store.postgres_sql import SEARCH_VECTOR
from aggregator.timestamps import utc_micros_or_none

log = logging.getLogger(__name__)

Connection: TypeAlias = "asyncpg.Connection[Record] | PoolConnectionProxy[Record]"

# A step on a large table (an index, a backfill) may take far longer than a statement of the
# running store is allowed (its command timeout).
MIGRATION_TIMEOUT_S = 24 * 3600.0

BACKFILL_ROWS = 10_000
_LOG_EVERY = 1_000_000

_CHUNK = """
SELECT topic, event_id, timestamp FROM events
WHERE (topic, event_id) > ($1, $2) ORDER BY topic, event_id LIMIT $3
"""

_FILL_TIMESTAMPS = """
UPDATE events AS e SET timestamp_us = b.timestamp_us
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS b (topic, event_id, timestamp_us)
WHERE e.topic = b.topic AND e.event_id = b.event_id
"""


async def find_events(connection: Connection) -> None:
    """Step 3: the timestamp as an instant (since/until, retention), and indexes for source,
    time and full text."""
    await connection.execute(
        "ALTER TABLE events ADD COLUMN timestamp_us bigint", timeout=MIGRATION_TIMEOUT_S
    )
    async for rows in _chunks(connection, step=3):
        await connection.execute(
            _FILL_TIMESTAMPS,
            [str(row[0]) for row in rows],
            [str(row[1]) for row in rows],
            [utc_micros_or_none(str(row[2])) for row in rows],
            timeout=MIGRATION_TIMEOUT_S,
        )
    await connection.execute(
        f"""
        CREATE INDEX events_timestamp ON events (timestamp_us);
        CREATE INDEX events_source_position ON events (source, tx, batch_index);
        CREATE INDEX events_search ON events USING gin ({SEARCH_VECTOR});
        """,
        timeout=MIGRATION_TIMEOUT_S,
    )


async def keep_keys(connection: Connection) -> None:
    """Step 4: the digest of every key ever stored, the dedup record from now on (it stays
    when retention deletes the event)."""
    await connection.execute(
        "CREATE TABLE seen_keys (key bytea PRIMARY KEY)", timeout=MIGRATION_TIMEOUT_S
    )
    async for rows in _chunks(connection, step=4):
        await connection.execute(
            "INSERT INTO seen_keys (key) SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING",
            [key_digest(str(row[0]), str(row[1])) for row in rows],
            timeout=MIGRATION_TIMEOUT_S,
        )


async def _chunks(connection: Connection, *, step: int) -> AsyncIterator[list[Record]]:
    """Every event's (topic, event_id, timestamp), in chunks of :data:`BACKFILL_ROWS`."""
    last = ("", "")
    done = 0
    while rows := await connection.fetch(_CHUNK, *last, BACKFILL_ROWS, timeout=MIGRATION_TIMEOUT_S):
        yield rows
        last = (str(rows[-1][0]), str(rows[-1][1]))
        done += len(rows)
        if done % _LOG_EVERY < len(rows):
            log.info("PostgreSQL store: step %d backfilled %d events so far", step, done)
    if done:
        log.info("PostgreSQL store: step %d backfilled %d events", step, done)
