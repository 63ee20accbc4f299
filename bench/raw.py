"""The stack's raw limits, with no product code: aio-pika, RabbitMQ and aiosqlite alone.

Each function returns events per second for the work it names, measured on the same workload
and broker the product figures use, so a product figure can be read as a share of its limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import aiosqlite
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from aggregator.store.sqlite_schema import SEARCH_INDEX
from bench.events import Workload

ROWS_SQL = (
    "INSERT OR IGNORE INTO events (topic, event_id, timestamp, source, payload)"
    " VALUES (?, ?, ?, ?, ?)"
)
SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS events (topic TEXT, event_id TEXT, timestamp TEXT,"
    " source TEXT, payload TEXT, PRIMARY KEY (topic, event_id))"
)
# The same table as the product's (a seq rowid, the key unique) with the product's full-text
# index kept up by its own trigger: what searching costs each write, with no product code.
SEARCHABLE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, topic TEXT, event_id TEXT,"
    " timestamp TEXT, source TEXT, payload TEXT, UNIQUE (topic, event_id))",
    *SEARCH_INDEX,
)


def row_of(body: bytes) -> tuple[str, str, str, str, str]:
    """The events-table row of an event body (decoded with orjson, no validation)."""
    event = orjson.loads(body)
    return (
        event["topic"],
        event["event_id"],
        event["timestamp"],
        event["source"],
        orjson.dumps(event["payload"]).decode(),
    )


async def declare(
    channel: AbstractChannel, exchange: str, queue: str, queue_type: str
) -> aio_pika.abc.AbstractExchange:
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    bound = await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": queue_type})
    await bound.bind(declared, routing_key="#")
    return declared


async def publish(
    url: str, exchange: str, queue: str, queue_type: str, workload: Workload, window: int
) -> float:
    """Declare a queue bound to ``exchange``, then :func:`publish_to` it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await declare(channel, exchange, queue, queue_type)
    return await publish_to(url, exchange, workload, window)


async def publish_to(url: str, exchange: str, workload: Workload, window: int) -> float:
    """Persistent messages with confirms, ``window`` publishes in flight, then their confirms."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        target = await channel.get_exchange(exchange)
        started = time.perf_counter()
        for start in range(0, workload.count, window):
            await asyncio.gather(
                *(
                    target.publish(
                        aio_pika.Message(
                            body,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=key,
                    )
                    for key, body in zip(
                        workload.keys[start : start + window],
                        workload.bodies[start : start + window],
                        strict=True,
                    )
                )
            )
        return workload.count / (time.perf_counter() - started)


# Stores one batch of deliveries before they are acked (None: ack without storing).
Write = Callable[[list[AbstractIncomingMessage]], Awaitable[None]]


async def consume_into(
    url: str, queue: str, count: int, write: Write | None, batch: int = 1000, prefetch: int = 2000
) -> float:
    """Consume ``count`` deliveries; ``write`` each batch of ``batch``, then ack it at once."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        source = await channel.get_queue(queue, ensure=True)
        pending: list[AbstractIncomingMessage] = []
        handled = 0
        done = asyncio.Event()
        full = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            pending.append(message)
            if len(pending) >= batch or handled + len(pending) >= count:
                full.set()

        started = time.perf_counter()
        tag = await source.consume(on_message)
        while handled < count:
            await full.wait()
            full.clear()
            taken = pending[:]
            del pending[:]
            if write is not None:
                await write(taken)
            await taken[-1].ack(multiple=True)
            handled += len(taken)
            # What arrived while this batch was stored may already complete the next one.
            if len(pending) >= batch or (pending and handled + len(pending) >= count):
                full.set()
        elapsed = time.perf_counter() - started
        await source.cancel(tag)
        done.set()
        return count / elapsed


async def consume(
    url: str, queue: str, count: int, batch: int = 1000, prefetch: int = 2000
) -> float:
    """Manual acks, one ``ack(multiple=True)`` per ``batch`` deliveries."""
    return await consume_into(url, queue, count, None, batch, prefetch)


async def open_db(path: Path, *, searchable: bool = False) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    for statement in SEARCHABLE_SCHEMA if searchable else (SCHEMA_SQL,):
        await db.execute(statement)
    await db.commit()
    return db


async def pipeline(
    url: str,
    queue: str,
    db_path: Path,
    count: int,
    batch: int = 1000,
    prefetch: int = 2000,
    *,
    searchable: bool = False,
) -> float:
    """Pre-filled queue → one SQLite transaction of INSERT OR IGNORE per batch → ack; with
    ``searchable``, into a table with the product's full-text index."""
    db = await open_db(db_path, searchable=searchable)

    async def write(taken: list[AbstractIncomingMessage]) -> None:
        await db.executemany(ROWS_SQL, [row_of(message.body) for message in taken])
        await db.commit()

    try:
        return await consume_into(url, queue, count, write, batch, prefetch)
    finally:
        await db.close()


async def count_rows(db_path: Path) -> int:
    db = await aiosqlite.connect(db_path)
    try:
        rows = list(await db.execute_fetchall("SELECT count(*) FROM events"))
        return int(rows[0][0])
    finally:
        await db.close()


async def sqlite_insert(db_path: Path, workload: Workload, batch: int = 1000) -> float:
    """The same event rows, ``executemany`` in transactions of ``batch``."""
    rows = [row_of(body) for body in workload.bodies]
    db = await open_db(db_path)
    try:
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            await db.executemany(ROWS_SQL, rows[start : start + batch])
            await db.commit()
        return len(rows) / (time.perf_counter() - started)
    finally:
        await db.close()


def main() -> None:
    """``python -m bench.raw pipeline ...``: the raw pipeline as a process of its own."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m bench.raw")
    parser.add_argument("role", choices=["pipeline"])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    rate = asyncio.run(pipeline(args.amqp_url, args.queue, args.db, args.count))
    sys.stdout.write(orjson.dumps({"rate": rate, "finished_at": time.time()}).decode() + "\n")


if __name__ == "__main__":
    main()
