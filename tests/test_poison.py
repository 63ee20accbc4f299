"""Poison over AMQP costs only itself: its batch-mates are stored, the worker lives on.

Every case publishes straight to the exchange, as any AMQP client may, and checks the same
three things: every valid event stored exactly once, exactly the poison dead-lettered (with a
one-line ``x-error``), and nothing left in the worker's hands.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import re
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from aggregator.settings import Settings
from aggregator.store import SqliteStore
from tests.conftest import make_settings
from tests.support.broker import (
    delete_topology,
    event_body,
    get_dead_letters,
    publish_raw,
    queue_depth,
)
from tests.support.exactly_once import assert_stored_exactly_once, make_events, wire
from tests.support.processes import start_worker
from tests.support.running import running_worker
from tests.support.waiting import eventually
from worker.consumer import Consumer

pytestmark = pytest.mark.broker


def deep_body(event_id: str, depth: int) -> bytes:
    """An event whose payload nests ``depth`` levels: orjson reads it, but cannot write it."""
    nested = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    return orjson.dumps(event_body(event_id)).replace(orjson.dumps({"id": event_id}), nested)


async def settled(settings: Settings, store: SqliteStore, received: int, dead: int) -> None:
    """Wait until the counters say so and the queue is empty."""

    async def probe() -> tuple[int, int, int]:
        stats = await store.stats()
        return stats.received, stats.dead_lettered, await queue_depth(settings, settings.queue)

    await eventually(probe, lambda s: s[0] >= received and s[1] >= dead and s[2] == 0)


async def test_a_deep_payload_costs_only_itself(amqp_url: str, tmp_path: Path) -> None:
    settings = make_settings(amqp_url, tmp_path, delivery_limit=3)
    events = make_events(100, "deep")
    messages = wire(events)
    messages.insert(50, ("app.log", deep_body("the-deep-one", 300)))
    messages.insert(20, ("app.log", deep_body("too-deep-for-us", 150)))
    try:
        async with running_worker(settings) as consumer:
            await publish_raw(settings, messages)
            store = await SqliteStore.open(settings.db_path)
            try:
                await settled(settings, store, received=100, dead=2)
                await assert_stored_exactly_once(store, settings, events, dead_lettered=2)
            finally:
                await store.close()
            assert not consumer._in_hand
        dead = await get_dead_letters(settings, expected=2)
        reasons = sorted(str(message.headers["x-error"]) for message in dead)
        assert all("deeper than 100 levels" in reason for reason in reasons), reasons
        assert sorted(m.body for m in dead) == sorted(
            [deep_body("the-deep-one", 300), deep_body("too-deep-for-us", 150)]
        )
        assert await queue_depth(settings, settings.dead_letter_queue) == 0
    finally:
        await delete_topology(settings)


async def test_integers_are_stored_exactly_or_dead_lettered(settings: Settings) -> None:
    exact = event_body("exact", payload={"max": 2**64 - 1, "min": -(2**63)})
    huge = orjson.dumps(event_body("huge", payload={"n": 0})).replace(b'"n":0', b'"n":' + b"1" * 22)
    async with running_worker(settings):
        await publish_raw(settings, [("app.log", orjson.dumps(exact)), ("app.log", huge)])
        [dead] = await get_dead_letters(settings, expected=1)
        assert dead.body == huge
        assert "outside 64 bits" in str(dead.headers["x-error"])
        store = await SqliteStore.open(settings.db_path)
        try:
            await settled(settings, store, received=1, dead=1)
            page, _ = await store.events_after(limit=10)
            assert [e.payload for e in page] == [{"max": 2**64 - 1, "min": -(2**63)}]
        finally:
            await store.close()


async def test_client_text_cannot_forge_a_log_line(settings: Settings, tmp_path: Path) -> None:
    forged = "2026-12-01 10:00:00,000 ERROR worker: the store was wiped"
    body: dict[str, Any] = {**event_body("forger"), f"x\n{forged}\n" + "y" * 2000: 1}
    with start_worker(settings, tmp_path / "worker.log") as worker:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            # An AMQP producer chooses the routing key and message id too.
            exchange = await channel.declare_exchange(
                settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True, passive=False
            )
            await eventually(
                lambda: asyncio.to_thread(worker.log_text),
                lambda text: "consuming queue=" in text,
                what="the worker to consume",
            )
            await exchange.publish(
                aio_pika.Message(orjson.dumps(body), message_id=f"id\n{forged}"),
                routing_key="app.log",
            )
        [dead] = await get_dead_letters(settings, expected=1)
        reason = str(dead.headers["x-error"])
        assert "\n" not in reason and len(reason) <= 1000
        await eventually(
            lambda: asyncio.to_thread(worker.log_text),
            lambda text: "dead-lettered:" in text,
            what="the dead-letter log line",
        )
        log = worker.log_text()
    assert not re.search(rf"^{re.escape(forged)}", log, re.MULTILINE), log
    assert "\\n2026-12-01 10:00:00,000 ERROR worker" in log


async def counts(store: SqliteStore) -> tuple[int, int]:
    stats = await store.stats()
    return stats.unique_processed, stats.dead_lettered


async def idle(consumer: Consumer) -> bool:
    return not consumer._in_hand and not consumer._handling


async def test_rounds_of_events_then_one_poison_leave_nothing_in_hand(settings: Settings) -> None:
    """500 events then one non-JSON line, ten times over: each round fully settled.

    As a command-line producer sends them: no confirms, one message at a time.
    """
    rounds, per_round = 10, 500
    async with running_worker(settings) as consumer:
        store = await SqliteStore.open(settings.db_path)
        connection = await aio_pika.connect(settings.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.get_exchange(settings.exchange)
            for round_ in range(1, rounds + 1):
                for event in make_events(per_round, f"round-{round_}"):
                    message = aio_pika.Message(orjson.dumps(event))
                    await exchange.publish(message, routing_key=str(event["topic"]))
                await exchange.publish(aio_pika.Message(b"not json\n"), routing_key="app.log")

                expected = (round_ * per_round, round_)
                await eventually(
                    lambda: counts(store),
                    functools.partial(operator.eq, expected),
                    what=f"round {round_} stored and its poison dead-lettered",
                )
                await eventually(
                    lambda: idle(consumer), bool, what="nothing left in the worker's hands"
                )
        finally:
            await connection.close()
            await store.close()
        assert await queue_depth(settings, settings.queue) == 0
        assert await queue_depth(settings, settings.dead_letter_queue) == rounds
