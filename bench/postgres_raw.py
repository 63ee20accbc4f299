"""The two raw PostgreSQL pipelines of ``bench/postgres.py``, with no product processing code:
a bare aio-pika consumer, one asyncpg statement per batch, one ``ack(multiple=True)``; into a
bare table, or into the product's schema with the product's own statement (see that module's
docstring for what each figure says)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson
from aio_pika.abc import AbstractIncomingMessage

from aggregator.settings import Settings
from aggregator.store import open_store
from aggregator.store.base import key_digest
from aggregator.store.postgres_sql import STORE_BATCH
from aggregator.timestamps import utc_micros
from bench import raw

# The product's batch (AGG_BATCH_SIZE's default), for the raw pipeline on its schema.
PRODUCT_BATCH = Settings().batch_size
# The counter slot the raw pipeline writes (each product store picks one of 64 at random).
RAW_SLOT = 0
RAW_SCHEMA = (
    "CREATE TABLE events (topic text NOT NULL, event_id text NOT NULL, timestamp text NOT NULL,"
    " source text NOT NULL, payload jsonb NOT NULL, PRIMARY KEY (topic, event_id))"
)
RAW_INSERT = (
    "INSERT INTO events SELECT * FROM"
    " unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])"
    " ON CONFLICT DO NOTHING"
)


async def raw_pipeline(amqp_url: str, queue: str, db_url: str, count: int) -> float:
    """Pre-filled queue → one unnest insert-or-nothing statement per batch → ack."""
    connection = await asyncpg.connect(db_url)
    try:
        await connection.execute(RAW_SCHEMA)

        async def write(taken: list[AbstractIncomingMessage]) -> None:
            rows = [raw.row_of(message.body) for message in taken]
            columns = [list(column) for column in zip(*rows, strict=True)]
            await connection.execute(RAW_INSERT, *columns)

        return await raw.consume_into(amqp_url, queue, count, write)
    finally:
        await connection.close()


def product_batch_arguments(bodies: Sequence[bytes], slot: int) -> tuple[object, ...]:
    """STORE_BATCH's parameters for a batch of AMQP bodies, as the product's store builds them
    (``PostgresStore._insert``): each key once (its first delivery), sorted by its digest,
    with its place in the batch as it came; the batch's size counts its duplicates. No
    validation: the bodies are the workload's, valid by construction."""
    first: dict[tuple[str, str], dict[str, object]] = {}
    for body in bodies:
        event = orjson.loads(body)
        first.setdefault((event["topic"], event["event_id"]), event)
    place = {key: index for index, key in enumerate(first)}
    digests = sorted((key_digest(*key), key) for key in first)
    batch = [first[key] for _, key in digests]
    return (
        slot,
        [key[0] for _, key in digests],
        [key[1] for _, key in digests],
        [event["timestamp"] for event in batch],
        [event["source"] for event in batch],
        [orjson.dumps(event["payload"]).decode() for event in batch],
        [place[key] for _, key in digests],
        len(bodies),
        [None] * len(batch),  # no publisher over AMQP without the x-publisher header
        [digest for digest, _ in digests],
        [utc_micros(str(event["timestamp"])) for event in batch],
    )


async def create_product_schema(settings: Settings) -> None:
    """The product's schema in the settings' store, by its own migration: the store opened
    and closed."""
    store = await open_store(settings)
    await store.close()


async def raw_pipeline_product_schema(amqp_url: str, queue: str, db_url: str, count: int) -> float:
    """Pre-filled queue → the product's STORE_BATCH per batch of the product's size → ack.

    The schema must exist already (:func:`create_product_schema`).
    """
    connection = await asyncpg.connect(db_url)
    try:

        async def write(taken: list[AbstractIncomingMessage]) -> None:
            arguments = product_batch_arguments([message.body for message in taken], RAW_SLOT)
            await connection.fetch(STORE_BATCH, *arguments)

        return await raw.consume_into(amqp_url, queue, count, write, batch=PRODUCT_BATCH)
    finally:
        await connection.close()
