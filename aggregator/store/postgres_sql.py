"""The PostgreSQL store's statements, and why each is right under concurrent workers.

The schema they run on is :mod:`.postgres_schema`; :mod:`.postgres` runs them.
"""

from __future__ import annotations

from aggregator.store.base import EventQuery, Position
from aggregator.store.search import parse

# $1 the slot; $2..$7, $9 and $10 the batch, sorted by key, each key once, with each event's
# place in the batch as it came, who published it and its timestamp as an instant ($10); $8
# the batch's size with its duplicates. unnest hands the rows to the INSERT in array order, so
# the unique index entries are taken in key order. The CTEs all run, in this order, whatever
# the main query reads.
STORE_BATCH = """
WITH new AS (
    INSERT INTO events
        (topic, event_id, timestamp, timestamp_us, source, payload, batch_index, publisher)
    SELECT topic, event_id, timestamp, timestamp_us, source, payload::jsonb, batch_index,
           publisher
    FROM unnest(
        $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $9::text[],
        $10::bigint[]
    ) AS batch (topic, event_id, timestamp, source, payload, batch_index, publisher,
                timestamp_us)
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

# The counters and topic counts, summed over the slots (stats() reads both in one snapshot).
COUNTER_SUMS = "SELECT name, sum(value)::bigint FROM counters GROUP BY name"
TOPIC_SUMS = "SELECT topic, sum(unique_count)::bigint FROM topic_counts GROUP BY topic ORDER BY 1"

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
