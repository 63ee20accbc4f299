"""The PostgreSQL store's statements, and why each is right under concurrent workers.

The schema they run on is :mod:`.postgres_schema`; :mod:`.postgres` runs them.
"""

from __future__ import annotations

from aggregator.store.base import EventQuery, Position
from aggregator.store.search import parse

# $1 the slot; $2..$7, $9..$11 the batch, each key once, sorted by its digest ($10), with each
# event's place in the batch as it came, who published it and its timestamp as an instant
# ($11); $8 the batch's size with its duplicates. The CTEs all run, in this order, whatever the
# main query reads.
#
# The dedup check is ``fresh``: the digests this statement adds to seen_keys (which outlives
# expired events); an event goes in only if its key is fresh. Concurrent workers wait on each
# other's uncommitted keys in seen_keys's unique index, and take them in one order (unnest hands
# rows over in array order, sorted by digest), so they never deadlock; a key fresh here belongs
# to this transaction alone, so the events insert waits on no one. Its ON CONFLICT only guards
# an events row without a seen key, which the migration does not leave.
STORE_BATCH = """
WITH batch AS (
    SELECT * FROM unnest(
        $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $9::text[],
        $10::bytea[], $11::bigint[]
    ) AS b (topic, event_id, timestamp, source, payload, batch_index, publisher, key,
            timestamp_us)
), fresh AS (
    INSERT INTO seen_keys (key) SELECT key FROM batch
    ON CONFLICT DO NOTHING
    RETURNING key
), new AS (
    INSERT INTO events
        (topic, event_id, timestamp, timestamp_us, source, payload, batch_index, publisher)
    SELECT topic, event_id, timestamp, timestamp_us, source, payload::jsonb, batch_index,
           publisher
    FROM batch JOIN fresh USING (key)
    ON CONFLICT (topic, event_id) DO NOTHING
    RETURNING topic, event_id
), topics AS (
    INSERT INTO topic_counts AS t (slot, topic, unique_count)
    SELECT $1::smallint, topic, count(*) FROM new GROUP BY topic ORDER BY topic
    ON CONFLICT (slot, topic) DO UPDATE SET unique_count = t.unique_count + excluded.unique_count
), counted AS (
    INSERT INTO counters AS c (slot, name, value)
    VALUES ($1::smallint, 'received', $8::bigint),
           ($1::smallint, 'unique_processed', (SELECT count(*) FROM new)),
           ($1::smallint, 'duplicate_dropped', $8::bigint - (SELECT count(*) FROM new))
    ON CONFLICT (slot, name) DO UPDATE SET value = c.value + excluded.value
)
SELECT topic, event_id FROM new
"""

# $1 the slot, $2 the cutoff (microseconds), $3 the most rows. The oldest first; rows another
# process is deleting already are skipped, not waited for. The count goes to ``expired`` in the
# same transaction.
DELETE_EXPIRED = """
WITH doomed AS (
    SELECT topic, event_id FROM events WHERE timestamp_us < $2::bigint
    ORDER BY timestamp_us LIMIT $3 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM events AS e USING doomed AS d
    WHERE e.topic = d.topic AND e.event_id = d.event_id
    RETURNING 1
), counted AS (
    INSERT INTO counters AS c (slot, name, value)
    SELECT $1::smallint, 'expired', count(*) FROM gone
    ON CONFLICT (slot, name) DO UPDATE SET value = c.value + excluded.value
)
SELECT count(*) FROM gone
"""

# The counters and topic counts, summed over the slots (stats() reads both in one snapshot).
COUNTER_SUMS = "SELECT name, sum(value)::bigint FROM counters GROUP BY name"
TOPIC_SUMS = "SELECT topic, sum(unique_count)::bigint FROM topic_counts GROUP BY topic ORDER BY 1"

# What the store takes on disk: its tables with their indexes and TOAST.
STORE_BYTES = """
SELECT sum(pg_total_relation_size(name))::bigint
FROM unnest(ARRAY['events', 'seen_keys', 'counters', 'topic_counts']::regclass[]) AS name
"""

# Readiness: the server answers, and this database has the store's schema.
PING = "SELECT 1 FROM schema_version LIMIT 1"

ADD_COUNTER = """
INSERT INTO counters AS c (slot, name, value) VALUES ($1, $2, $3)
ON CONFLICT (slot, name) DO UPDATE SET value = c.value + excluded.value
"""

# The horizon of a page: no transaction below it can still commit a row into this database.
# It is the snapshot's xmin (every transaction below it has ended), but counting only the
# transactions of backends connected here: one writing in another database of the server
# cannot add events, and need not hold /events back. Why it is exact: a transaction with an id
# below this snapshot's xmax that has not ended is in its xip list, and still shows its
# backend_xid when pg_stat_activity is read (later in this statement), so the horizon is at or
# below its id; any other one gets an id at or above xmax. The page must then be read with a
# later snapshot (a second statement, READ COMMITTED): a transaction that ended in between is
# visible to it.
HORIZON = """
SELECT least(
    pg_snapshot_xmax(pg_current_snapshot()),
    (SELECT min(running)
     FROM pg_snapshot_xip(pg_current_snapshot()) AS running
     WHERE running::xid IN (
         SELECT backend_xid FROM pg_stat_activity
         WHERE datname = current_database() AND backend_xid IS NOT NULL))
)::text
"""

_COLUMNS = """tx::text::bigint, batch_index, topic, event_id, timestamp, source, payload::text,
       processed_at, publisher"""

GET_EVENT = f"SELECT {_COLUMNS} FROM events WHERE topic = $1 AND event_id = $2"

# What q searches: the source's words and the payload's keys and scalar values. The GIN index
# of schema step 3 is on this very expression (PostgreSQL uses it only for the same text), so
# changing it means a new step with a new index.
SEARCH_VECTOR = "(to_tsvector('simple', source) || jsonb_to_tsvector('simple', payload, '\"all\"'))"


def page_query(
    query: EventQuery, after: Position | None, horizon: str, limit: int
) -> tuple[str, list[object]]:
    """The SELECT of one page, and its parameters: events matching ``query`` past ``after``,
    of transactions below ``horizon`` (none of which can still commit).

    Newest first is safe the same way: a desc page starts below the horizon and moves down,
    and every row below the horizon is final, so rows committed later only ever appear above
    where a newest-first reader started (it sees them by starting again).
    """
    parameters: list[object] = [horizon]
    where = ["tx < $1::text::xid8"]

    def bind(value: object) -> str:
        parameters.append(value)
        return f"${len(parameters)}"

    if after is not None:
        tx, index = bind(str(after[0])), bind(after[1])
        operator = "<" if query.newest_first else ">"
        where.append(f"(tx, batch_index) {operator} ({tx}::text::xid8, {index}::bigint)")
    if query.topic is not None:
        where.append(f"topic = {bind(query.topic)}")
    if query.source is not None:
        where.append(f"source = {bind(query.source)}")
    if query.since_us is not None:
        where.append(f"timestamp_us >= {bind(query.since_us)}::bigint")
    if query.until_us is not None:
        where.append(f"timestamp_us < {bind(query.until_us)}::bigint")
    if query.text is not None:
        # PostgreSQL reads q itself; parse() refuses what SQLite's store refuses too.
        parse(query.text)
        where.append(f"{SEARCH_VECTOR} @@ websearch_to_tsquery('simple', {bind(query.text)})")
    order = "DESC" if query.newest_first else "ASC"
    statement = (
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
        f" ORDER BY tx {order}, batch_index {order} LIMIT {bind(limit)}"
    )
    return statement, parameters
