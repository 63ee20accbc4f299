"""Workers on PostgreSQL as real processes: one of three killed, the server restarted under them,
a worker's host cut off from the broker and the database. Exact counts each time."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.store import DedupStore, PostgresStore
from tests.conftest import make_settings
from tests.support.broker import delete_topology, publish_raw, queue_depth
from tests.support.exactly_once import assert_stored_exactly_once, make_events, wait_for_exit, wire
from tests.support.netns import Host, service_addresses
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import Process, start_worker
from tests.support.rabbit_node import RabbitNode
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@contextlib.asynccontextmanager
async def postgres_settings(
    amqp_url: str, tmp_path: Path, store_url: str
) -> AsyncIterator[Settings]:
    settings = make_settings(amqp_url, tmp_path, store_url=store_url, batch_size=50, prefetch=200)
    try:
        yield settings
    finally:
        await delete_topology(settings)


async def stored(
    store: DedupStore, count: int, workers: list[Process], timeout: float = 120
) -> None:
    async def received() -> int:
        for worker in workers:
            assert worker.popen.poll() is None, worker.log_text()[-3000:]
        return (await store.stats()).received

    await eventually(received, lambda n: n >= count, timeout=timeout, what=f"{count} received")


@pytest.mark.timeout(240)
async def test_kill_9_one_of_three_workers_on_postgres(
    amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    events = make_events(6000, "three")
    messages = wire(events + events[::10])  # a producer that retried 600 of them
    random.Random(7).shuffle(messages)
    async with postgres_settings(amqp_url, tmp_path, pg_url) as settings:
        store = await PostgresStore.open(pg_url)
        try:
            await publish_raw(settings, messages)
            with contextlib.ExitStack() as stack:
                workers = [
                    stack.enter_context(start_worker(settings, tmp_path / f"worker-{i}.log"))
                    for i in range(3)
                ]
                await eventually(
                    store.stats, lambda s: s.unique_processed > 500, what="the first events"
                )
                workers[1].kill()
                assert workers[1].popen.returncode == -signal.SIGKILL
                survivors = [workers[0], workers[2]]
                await stored(store, len(messages), survivors)
                await eventually(
                    lambda: queue_depth(settings, settings.queue), lambda n: n == 0, what="empty"
                )
                for worker in survivors:
                    worker.signal(signal.SIGTERM)
                    assert await wait_for_exit(worker, 15) == 0
            stats = await assert_stored_exactly_once(store, settings, events)
            assert stats.received >= len(messages)
        finally:
            await store.close()


@pytest.mark.timeout(240)
async def test_postgres_restarted_under_a_running_worker(amqp_url: str, tmp_path: Path) -> None:
    with PrivatePostgres() as server:
        async with postgres_settings(amqp_url, tmp_path, server.url) as settings:
            first, during, after = (
                make_events(1000, name) for name in ("first", "during", "after")
            )
            with start_worker(settings, tmp_path / "worker.log") as worker:
                store = await PostgresStore.open(server.url)
                try:
                    await publish_raw(settings, wire(first))
                    await stored(store, 1000, [worker])
                finally:
                    await store.close()
                await asyncio.to_thread(server.stop)
                await publish_raw(settings, wire(during))
                await eventually(
                    lambda: asyncio.to_thread(worker.log_text),
                    lambda text: "store unavailable" in text,
                    what="the worker to hold for the store",
                )
                await asyncio.to_thread(server.start)
                await publish_raw(settings, wire(after))
                store = await PostgresStore.open(server.url)
                try:
                    await stored(store, 3000, [worker])
                    await assert_stored_exactly_once(store, settings, first + during + after)
                    assert "store available again" in worker.log_text()
                finally:
                    await store.close()


@pytest.mark.timeout(300)
async def test_a_worker_host_cut_off_hands_its_deliveries_to_the_other(tmp_path: Path) -> None:
    """Two worker hosts (network namespaces) share a broker and a PostgreSQL; one loses its link
    for longer than the heartbeat mid-stream, then gets it back."""
    with (
        service_addresses(2) as (broker_address, db_address),
        RabbitNode(
            tmp_path / "rabbit",
            extra_listen_addresses=[broker_address],
            extra_config=["loopback_users = none"],
        ) as node,  # fmt: skip
        PrivatePostgres(listen=("127.0.0.1", db_address)) as server,
        Host("worker-a") as host_a,
        Host("worker-b") as host_b,
    ):
        local = make_settings(node.url, tmp_path, store_url=server.url, heartbeat_s=2)
        remote = local.model_copy(
            update={
                "amqp_url": node.url_on(broker_address),
                "store_url": server.url_at(db_address),
                "batch_size": 50,
                "prefetch": 200,
            }
        )
        events = make_events(8000, "hosts")
        store = await PostgresStore.open(server.url)
        try:
            with (
                start_worker(
                    remote, tmp_path / "worker-a.log", wrapper=host_a.exec_prefix
                ) as worker_a,
                start_worker(
                    remote, tmp_path / "worker-b.log", wrapper=host_b.exec_prefix
                ) as worker_b,
            ):
                await publish_raw(local, wire(events[:4000]))
                await eventually(store.stats, lambda s: s.received > 500, what="both consuming")
                host_a.cut()
                cut = time.monotonic()
                await publish_raw(local, wire(events[4000:]))
                # Past the heartbeat the broker gives host A's deliveries to host B.
                await eventually(
                    lambda: asyncio.to_thread(worker_a.log_text),
                    lambda text: "lost broker node" in text,
                    timeout=60,
                    what="worker A to notice its link is gone",
                )
                assert time.monotonic() - cut > 2 * local.heartbeat_s
                host_a.heal()
                await stored(store, len(events), [worker_a, worker_b], timeout=180)
                await eventually(
                    lambda: queue_depth(local, local.queue), lambda n: n == 0, what="empty"
                )
            await assert_stored_exactly_once(store, local, events)
        finally:
            await store.close()
            await delete_topology(local)
