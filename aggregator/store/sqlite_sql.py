"""The SQLite store's statements, and the one query that reads events, built per filter.

The schema they run on is :mod:`.sqlite_schema`; :mod:`.sqlite` runs them, one writer at a
time (BEGIN IMMEDIATE), so a row number (``seq``) is also commit order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aggregator.store.base import EventQuery, Position, StoredEvent
from aggregator.store.search import fts5_query, parse

MAX_SEQ = 2**63 - 1

# Bound the SQL variables of one statement well below SQLite's limit (32,766).
MAX_VARIABLES = 4000

COLUMNS = "seq, topic, event_id, timestamp, source, payload, processed_at, publisher"

INSERT_EVENT = """
INSERT INTO events
    (topic, event_id, timestamp, timestamp_us, source, payload, processed_at, publisher)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

BUMP_COUNTER = "UPDATE counters SET value = value + ? WHERE name = ?"

BUMP_TOPIC = """
INSERT INTO topic_counts (topic, unique_count) VALUES (?, ?)
ON CONFLICT (topic) DO UPDATE SET unique_count = unique_count + excluded.unique_count
"""

GET_EVENT = f"SELECT {COLUMNS} FROM events WHERE topic = ? AND event_id = ?"

# The oldest events first, a batch at a time; the search index follows by trigger.
DELETE_EXPIRED = """
DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE timestamp_us < ? ORDER BY timestamp_us LIMIT ?)
"""


def claim_keys(count: int) -> str:
    """Insert ``count`` key digests; RETURNING names those not seen before (the new events).

    One statement does the dedup check and records the keys: a key present (its event stored,
    expired or not) is not returned, so its delivery is a duplicate.
    """
    values = ", ".join("(?)" for _ in range(count))
    return f"INSERT INTO seen_keys (key) VALUES {values} ON CONFLICT DO NOTHING RETURNING key"


def page_query(query: EventQuery, after: Position | None, limit: int) -> tuple[str, list[object]]:
    """The SELECT of one page (``limit`` rows) and its parameters.

    With ``q``, the full-text index drives, in rowid (= seq) order, so a page of a common word
    reads a page's worth of matches, not every match.
    """
    where: list[str] = []
    parameters: list[object] = []
    seq = "seq"
    source = "events"
    if query.text is not None:
        source = "events_search CROSS JOIN events ON events.seq = events_search.rowid"
        seq = "events_search.rowid"
        where.append("events_search MATCH ?")
        parameters.append(fts5_query(parse(query.text)))
    if after is not None:
        # A position of another store's making (a cursor kept across a change of backend) is
        # past every row number of this one, as it would be.
        where.append(f"{seq} < ?" if query.newest_first else f"{seq} > ?")
        parameters.append(after[1] if after[0] == 0 else MAX_SEQ)
    for column, value in (("topic", query.topic), ("source", query.source)):
        if value is not None:
            where.append(f"events.{column} = ?")
            parameters.append(value)
    if query.since_us is not None:
        where.append("events.timestamp_us >= ?")
        parameters.append(query.since_us)
    if query.until_us is not None:
        where.append("events.timestamp_us < ?")
        parameters.append(query.until_us)
    columns = ", ".join(f"events.{column}" for column in COLUMNS.split(", "))
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    order = "DESC" if query.newest_first else "ASC"
    sql = f"SELECT {columns} FROM {source} {condition} ORDER BY {seq} {order} LIMIT ?"
    return sql, [*parameters, limit]


def stored_event(row: Sequence[Any]) -> StoredEvent:
    """A row of :data:`COLUMNS` as the store returns it."""
    return StoredEvent(
        position=(0, int(row[0])),
        topic=str(row[1]),
        event_id=str(row[2]),
        timestamp=str(row[3]),
        source=str(row[4]),
        payload_json=str(row[5]).encode(),
        processed_at=str(row[6]),
        publisher=None if row[7] is None else str(row[7]),
    )
