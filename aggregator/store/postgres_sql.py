"""The PostgreSQL store's statements, and why each is right under concurrent workers.

The schema they run on is :mod:`.postgres_schema`; :mod:`.postgres` runs them.
"""

from __future__ import annotations

# $1 the slot; $2..$7 and $9 the batch, sorted by key, each key once, with each event's place
# in the batch as it came and who published it; $8 the batch's size with its duplicates. unnest
# hands the rows to the INSERT in array order, so the unique index entries are taken in key
# order. The CTEs all run, in this order, whatever the main query reads.
STORE_BATCH = """
WITH new AS (
    INSERT INTO events (topic, event_id, timestamp, source, payload, batch_index, publisher)
    SELECT topic, event_id, timestamp, source, payload::jsonb, batch_index, publisher
    FROM unnest(
        $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $9::text[]
    ) AS batch (topic, event_id, timestamp, source, payload, batch_index, publisher)
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

# Events after a position, of transactions below the horizon ($3): none can commit before them.
PAGE = """
SELECT tx::text::bigint, batch_index, topic, event_id, timestamp, source, payload::text,
       processed_at, publisher
FROM events
WHERE (tx, batch_index) > ($1::text::xid8, $2::bigint) AND tx < $3::text::xid8 {topic}
ORDER BY tx, batch_index
LIMIT $4
"""
