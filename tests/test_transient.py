"""A store that keeps failing: bounded retries, requeue, then the quorum queue's delivery limit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from aggregator.store import DedupStore
from tests.conftest import make_settings
from tests.support.broker import (
    delete_topology,
    event_body,
    get_dead_letters,
    publish_raw,
    queue_depth,
)
from tests.support.running import running_worker
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def test_a_locked_store_is_never_acked_nor_requeued_forever(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        amqp_url,
        tmp_path,
        delivery_limit=2,
        store_attempts=2,
        sqlite_busy_timeout_ms=20,
    )
    store = await DedupStore.open(settings.db_path)
    await store.close()
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock and never lets go
        async with running_worker(settings):
            stuck = orjson.dumps(event_body("stuck"))
            await publish_raw(settings, [("app.log", stuck)])

            # Retried in-process, requeued, redelivered, until the delivery limit moves it to
            # the dead-letter queue, with RabbitMQ's own x-death header saying why.
            [dead] = await get_dead_letters(settings, expected=1, timeout=60)
            assert dead.body == stuck
            death = dead.headers["x-death"]
            assert isinstance(death, list) and death
            first = death[0]
            assert isinstance(first, dict)
            assert first["reason"] == "delivery_limit"
            assert first["queue"] == settings.queue
            assert await queue_depth(settings, settings.queue) == 0

            blocker.execute("ROLLBACK")
            # Nothing was counted for the stuck event, and the worker goes on once the lock is gone.
            await publish_raw(settings, [("app.log", orjson.dumps(event_body("later")))])
            reader = await DedupStore.open(settings.db_path)
            try:
                stats = await eventually(
                    reader.stats, lambda s: s.received >= 1, what="the later event stored"
                )
            finally:
                await reader.close()
            assert (stats.received, stats.unique_processed, stats.dead_lettered) == (1, 1, 0)
    finally:
        blocker.close()
        await delete_topology(settings)
