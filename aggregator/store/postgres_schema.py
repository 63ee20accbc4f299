"""The PostgreSQL store's schema: an ordered list of steps, applied once each, at start.

Every process that opens the store runs :func:`migrate`; the steps not yet recorded in
``schema_version`` are applied in one transaction under a transaction-level advisory lock, so
any number of processes starting at once apply each step exactly once and the others wait,
then find nothing left to do. A step is never edited once released: a change is a new step.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from aggregator.errors import StoreUnavailable
from aggregator.store.postgres_backfill import (
    MIGRATION_TIMEOUT_S,
    Connection,
    find_events,
    keep_keys,
)

log = logging.getLogger(__name__)

# A step is SQL, or, where rows need Python to fill a column, a function of the connection.
Step: TypeAlias = "str | Callable[[Connection], Awaitable[None]]"

# pg_advisory_xact_lock's key for this schema's migrations (b"aggrschm"): any constant
# unlikely to be used by another application on the same database.
MIGRATION_LOCK = int.from_bytes(b"aggrschm", "big", signed=True)

# xid8 and pg_current_xact_id() came with PostgreSQL 13.
MIN_SERVER_VERSION = 13

MIGRATIONS: tuple[Step, ...] = (
    # 1. The events (each row is the dedup record of its key) and the counters.
    #
    # (tx, batch_index) is the processing order: the id of the transaction that wrote the row,
    # then the row's place in its batch (one batch per transaction; the unique index says so
    # loudly should that ever change). Readers only return rows whose tx is below their
    # snapshot's xmin, i.e. whose transaction and every earlier one have ended, so a commit can
    # never land behind a position already handed out. (A sequence number could: it is taken
    # at insert, not at commit, so a row with a lower one can commit after a reader passed it.)
    #
    # The counters are split in rows per (slot, name) and (slot, topic), each store instance
    # writing its own slot and stats() summing them: still in the batch's transaction, but
    # without one row that every worker's transaction would queue on.
    """
    CREATE TABLE events (
        topic        text        NOT NULL,
        event_id     text        NOT NULL,
        timestamp    text        NOT NULL,
        source       text        NOT NULL,
        payload      jsonb       NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        tx           xid8        NOT NULL DEFAULT pg_current_xact_id(),
        batch_index  integer     NOT NULL,
        PRIMARY KEY (topic, event_id)
    );
    CREATE UNIQUE INDEX events_position ON events (tx, batch_index);
    CREATE INDEX events_topic_position ON events (topic, tx, batch_index);
    CREATE TABLE counters (
        slot  smallint NOT NULL,
        name  text     NOT NULL,
        value bigint   NOT NULL,
        PRIMARY KEY (slot, name)
    );
    CREATE TABLE topic_counts (
        slot         smallint NOT NULL,
        topic        text     NOT NULL,
        unique_count bigint   NOT NULL,
        PRIMARY KEY (slot, topic)
    );
    """,
    # 2. Who published each event: the API key's name (NULL without keys, or over AMQP).
    "ALTER TABLE events ADD COLUMN publisher text",
    # 3. Finding events: the timestamp as an instant, indexes for source, time and full text
    # (postgres_backfill.py).
    find_events,
    # 4. Keeping keys for good: seen_keys, the digest of every key ever stored, is the dedup
    # record from now on (retention deletes events, not keys).
    keep_keys,
)


class ServerTooOld(StoreUnavailable):
    """The server lacks what the schema needs: no wait will change that, so no retry."""


_VERSION_TABLE = """
CREATE TABLE schema_version (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(connection: Connection) -> int:
    """Bring the schema up to date; the version it is at afterwards.

    Raises the driver's errors as they come (the store translates them), or ServerTooOld.
    """
    version = connection.get_server_version()
    if version.major < MIN_SERVER_VERSION:
        raise ServerTooOld(
            f"the PostgreSQL store needs PostgreSQL {MIN_SERVER_VERSION} or later, the server"
            f" is {version.major}.{version.minor}"
        )
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        if await connection.fetchval("SELECT to_regclass('schema_version')") is None:
            await connection.execute(_VERSION_TABLE)
        current = int(
            await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        )
        for number, step in enumerate(MIGRATIONS[current:], start=current + 1):
            if isinstance(step, str):
                await connection.execute(step, timeout=MIGRATION_TIMEOUT_S)
            else:
                await step(connection)
            await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            log.info("PostgreSQL store: applied schema step %d", number)
    if current > len(MIGRATIONS):
        log.warning(
            "PostgreSQL store: the schema is at version %d, newer than this code's %d; carrying"
            " on (steps only ever add)",
            current,
            len(MIGRATIONS),
        )
    return max(current, len(MIGRATIONS))
