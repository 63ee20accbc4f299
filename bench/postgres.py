"""``python -m bench.postgres``: the worker on a PostgreSQL store beside asyncpg's raw limit.

Issue 9 (PostgreSQL as the shared store), on the workload of ``product.drain``: a pre-filled
queue of ``--events`` deliveries, 30% of them duplicates, and one PostgreSQL server. In each
repeat, on a fresh database and fresh queue each:

* ``postgres.raw_pipeline``: no product code. A bare aio-pika consumer, one asyncpg
  ``INSERT ... SELECT * FROM unnest(...) ON CONFLICT DO NOTHING`` per 1,000 deliveries on a
  table keyed like the product's (topic, event_id; the payload as ``jsonb``), then one
  ``ack(multiple=True)``: what the stack gives with nothing in between.
* ``postgres.raw_pipeline_product_schema``: the same bare consumer and ``ack(multiple=True)``,
  still no product processing code, but writing what the product writes: into the product's
  schema (made before the clock by the product's own migration, opening and closing the store
  on the fresh database) with the product's own statement (``STORE_BATCH``, one per batch of
  the product's ``AGG_BATCH_SIZE``, 500), its arguments built here as
  ``aggregator/store/postgres.py`` builds them (each key once, sorted by its digest, its place
  in the batch, its timestamp as an instant; the digest and the instant from the product's own
  two functions, ``key_digest`` and ``utc_micros``, so the rows are the product's).
* ``postgres.drain``, ``postgres.drain_2_workers``, ``postgres.drain_4_workers``: ``python -m
  worker --workers N`` with ``AGG_STORE_URL`` on the database, timed once every worker consumes
  (``bench.runner.timed_drain``).

The two raw figures read the product two ways. Against ``raw_pipeline_product_schema`` (same
schema, statement and batch size) the product's share is what its own code costs: decoding and
validating each event, its batching, settlement and process, and nothing else. Against
``raw_pipeline`` it is the stack's wall for any pipeline of this shape; the difference between
the two raw figures is what the product's schema costs to write into: the permanent dedup
record (``seen_keys``), the counters, and the events table's indexes (full-text search,
retention by time, paging by position, by topic and by source).

The order of the five rotates from one repeat to the next. After each, PostgreSQL is asked:
the table holds exactly the workload's distinct events, each once, and (for the product and
the raw pipeline on its schema) the store's counters are exact and ``seen_keys`` holds each
distinct key's digest. A count that differs fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson

from aggregator.settings import Settings
from aggregator.store.base import key_digest
from bench import raw
from bench.comparison import Comparison
from bench.events import Workload, make_workload
from bench.figures import log_check as check
from bench.postgres_raw import (
    create_product_schema,
    raw_pipeline,
    raw_pipeline_product_schema,
)
from bench.runner import (
    Drain,
    delete_names,
    fresh_settings,
    prefill_product_queue,
    read_store_stats,
    timed_drain,
)
from bench.tables import markdown

log = logging.getLogger("bench.postgres")

DUP_RATE = 0.3
WORKERS = (1, 2, 4)
RAW = "postgres.raw_pipeline"
RAW_PRODUCT_SCHEMA = "postgres.raw_pipeline_product_schema"
DATABASE_PREFIX = "agg_bench_"
ADMIN_URL = os.environ.get("AGG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

ROWS = (
    (
        "postgres.raw_pipeline",
        "raw: queue → asyncpg unnest insert, on conflict do nothing → ack",
        "events/s",
    ),
    (
        "postgres.raw_pipeline_product_schema",
        "raw on the product's schema: queue → its STORE_BATCH per 500 → ack",
        "events/s",
    ),
    ("postgres.drain", "product: worker drains into PostgreSQL", "events/s"),
    ("postgres.drain_2_workers", "product: the same with `--workers 2`", "events/s"),
    ("postgres.drain_4_workers", "product: the same with `--workers 4`", "events/s"),
    ("postgres.raw_pipeline_cpu_us", "raw pipeline: its process's CPU per event", "µs"),
    (
        "postgres.raw_pipeline_product_schema_cpu_us",
        "raw on the product's schema: its process's CPU per event",
        "µs",
    ),
    ("postgres.drain_cpu_us", "product: the worker's CPU per event", "µs"),
    ("postgres.drain_2_workers_cpu_us", "product: 2 workers' CPU per event", "µs"),
    ("postgres.drain_4_workers_cpu_us", "product: 4 workers' CPU per event", "µs"),
)

COMPARISONS = (
    # What the product's code costs: the same schema, statement and batch size without it.
    Comparison(
        "PostgreSQL: worker drain vs raw pipeline on the product's schema",
        "postgres.drain",
        "postgres.raw_pipeline_product_schema",
        0.9,
    ),
    # The stack's wall: a bare single-key table. Below the one above by what the product's
    # schema costs to write (seen_keys, counters, the events table's indexes).
    Comparison(
        "PostgreSQL: worker drain vs raw asyncpg pipeline (bare table)",
        "postgres.drain",
        "postgres.raw_pipeline",
        0.9,
    ),
    Comparison("PostgreSQL: 2 workers vs 1", "postgres.drain_2_workers", "postgres.drain", 1.5),
    Comparison("PostgreSQL: 4 workers vs 1", "postgres.drain_4_workers", "postgres.drain", 1.5),
    # The client side's CPU per event (PostgreSQL's and RabbitMQ's not counted): steadier than
    # the rates on a machine shared with other work.
    Comparison(
        "PostgreSQL: worker CPU per event vs the raw pipeline's on the product's schema",
        "postgres.drain_cpu_us",
        "postgres.raw_pipeline_product_schema_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
    Comparison(
        "PostgreSQL: worker CPU per event vs the raw pipeline's (bare table)",
        "postgres.drain_cpu_us",
        "postgres.raw_pipeline_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
    Comparison(
        "PostgreSQL: 4 workers' CPU per event vs 1 worker's",
        "postgres.drain_4_workers_cpu_us",
        "postgres.drain_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
)


def figure_name(workers: int) -> str:
    return "postgres.drain" if workers == 1 else f"postgres.drain_{workers}_workers"


WORKERS_OF = {figure_name(workers): workers for workers in WORKERS}
FIGURES = (RAW, RAW_PRODUCT_SCHEMA, *WORKERS_OF)


def rotated(items: tuple[str, ...], repeat: int) -> list[str]:
    """``items`` starting at ``repeat`` (mod its length): each goes first in turn."""
    shift = repeat % len(items)
    return [*items[shift:], *items[:shift]]


def identities(workload: Workload) -> set[tuple[str, str]]:
    """The (topic, event_id) of every distinct event of the workload."""
    found = set()
    for body in workload.bodies:
        event = orjson.loads(body)
        found.add((str(event["topic"]), str(event["event_id"])))
    return found


async def check_stored(url: str, workload: Workload, what: str) -> None:
    """The events table holds exactly the workload's distinct events, each once."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT topic, event_id FROM events")
    finally:
        await connection.close()
    stored = [(str(row[0]), str(row[1])) for row in rows]
    check(f"{what} rows", workload.distinct, len(stored))
    # Rows the workload does not have, or workload events with no row: none.
    check(f"{what} rows differing from the workload's", 0, len(identities(workload) ^ set(stored)))


async def create_database(admin_url: str) -> str:
    """A new, empty database on the admin URL's server; its URL."""
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


async def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a database this bench made")
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def check_product_schema(
    settings: Settings, db_url: str, workload: Workload, what: str
) -> None:
    """The store's counters are exact, seen_keys holds each distinct key's digest once, and
    the events table holds the workload's distinct events (:func:`check_stored`)."""
    stats = await read_store_stats(settings)
    check(f"{what} received", workload.count, stats.received)
    check(f"{what} unique", workload.distinct, stats.unique_processed)
    check(f"{what} duplicates", workload.count - workload.distinct, stats.duplicate_dropped)
    check(f"{what} dead-lettered", 0, stats.dead_lettered)
    connection = await asyncpg.connect(db_url)
    try:
        keys = {bytes(row[0]) for row in await connection.fetch("SELECT key FROM seen_keys")}
    finally:
        await connection.close()
    digests = {key_digest(*key) for key in identities(workload)}
    check(f"{what} seen keys differing from the workload's", 0, len(keys ^ digests))
    await check_stored(db_url, workload, what)


async def measure_raw(
    settings: Settings, workload: Workload, db_url: str, *, product_schema: bool = False
) -> Drain:
    # A plain quorum queue, as raw.pipeline consumes from.
    await raw.publish(
        settings.amqp_url, settings.exchange, settings.queue, settings.queue_type, workload, 1000
    )
    pipeline = raw_pipeline
    if product_schema:
        await create_product_schema(settings)  # before the clock, as the worker's start-up is
        pipeline = raw_pipeline_product_schema
    cpu_started = time.process_time()  # this process runs nothing else meanwhile
    rate = await pipeline(settings.amqp_url, settings.queue, db_url, workload.count)
    cpu_us = (time.process_time() - cpu_started) / workload.count * 1e6
    if product_schema:
        await check_product_schema(
            settings, db_url, workload, "raw pipeline on the product's schema"
        )
    else:
        await check_stored(db_url, workload, "raw pipeline")
    return Drain(rate, cpu_us)


async def measure_drain(
    settings: Settings, workload: Workload, db_url: str, workers: int, work: Path
) -> Drain:
    await prefill_product_queue(settings, workload)
    drain = await timed_drain(settings, workload.count, workers, work / f"worker-{workers}.log")
    await check_product_schema(settings, db_url, workload, f"postgres drain, {workers} worker(s)")
    return drain


async def figures(
    amqp_url: str, events: int, repeats: int, *, admin_url: str = ADMIN_URL
) -> dict[str, list[float]]:
    """Every figure of this module, one value per repeat; raises CountMismatch on a bad count."""
    values: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="agg-bench-pg-") as tmp:
        work = Path(tmp)
        for repeat in range(repeats):
            workload = make_workload(events, dup_rate=DUP_RATE, seed=1000 + repeat)
            for name in rotated(FIGURES, repeat):
                db_url = await create_database(admin_url)
                settings = fresh_settings(amqp_url, work, Settings().queue_type, store_url=db_url)
                try:
                    if name in (RAW, RAW_PRODUCT_SCHEMA):
                        drain = await measure_raw(
                            settings, workload, db_url, product_schema=name == RAW_PRODUCT_SCHEMA
                        )
                    else:
                        drain = await measure_drain(
                            settings, workload, db_url, WORKERS_OF[name], work
                        )
                finally:
                    await delete_names(settings)
                    await drop_database(admin_url, db_url)
                values.setdefault(name, []).append(drain.rate)
                values.setdefault(f"{name}_cpu_us", []).append(drain.cpu_us)
                log.info("repeat %d: %-36s %8.0f/s %6.1f µs", repeat + 1, name, *drain)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="deliveries per figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amqp-url", default=Settings().amqp_url)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL superuser's URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    values = asyncio.run(
        figures(args.amqp_url, args.events, args.repeats, admin_url=args.admin_url)
    )
    text = markdown(values, ROWS, COMPARISONS)
    sys.stdout.write(
        f"{args.events:,} deliveries (30% duplicates) per figure, {args.repeats} repeat(s), "
        f"{os.cpu_count()} cores; took {time.monotonic() - started:.0f} s\n\n{text}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
