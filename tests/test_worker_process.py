"""``python -m worker`` as a real subprocess on a real broker: kill -9, SIGTERM, drain, no broker.

Each test pre-fills or streams into its own queue, drives the worker from outside as an operator
would, and then reads the SQLite store to check the delivery guarantee: every distinct
``(topic, event_id)`` stored exactly once, the counters consistent, the queue empty.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.store import DedupStore, SqliteStore, Stats
from tests.conftest import make_settings
from tests.support.broker import delete_topology, publish_raw, queue_depth
from tests.support.exactly_once import (
    assert_stored_exactly_once,
    make_events,
    wait_for_exit,
    wire,
)
from tests.support.processes import Process, free_port, start_worker
from tests.support.waiting import eventually

# How long a `--drain` of a few thousand events may take on a loaded 2-core machine.
DRAIN_TIMEOUT_S = 120.0
# The contract: SIGTERM -> exit 0 within 10 s.
STOP_DEADLINE_S = 10.0


@pytest.fixture
async def small_batches(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings whose worker commits 20 events per transaction with 100 deliveries in hand.

    Each commit is an fsync (``synchronous = FULL``), so a few thousand events take a few
    hundred commits: long enough that a kill or SIGTERM lands mid-stream even on a fast
    machine, while a prefetch larger than the batch keeps deliveries unacked in flight.
    """
    settings = make_settings(amqp_url, tmp_path, batch_size=20, prefetch=100)
    yield settings
    await delete_topology(settings)


async def open_store(settings: Settings) -> DedupStore:
    """The test's own reader on the worker's database (created here, before any worker)."""
    return await SqliteStore.open(settings.db_path)


async def first_events_stored(store: DedupStore, worker: Process) -> Stats:
    """Poll the store until the running worker has stored some events; fail if it exited."""

    async def probe() -> Stats:
        if worker.popen.poll() is not None:
            raise AssertionError(
                f"the worker exited {worker.popen.returncode}; log:\n{worker.log_text()[-4000:]}"
            )
        return await store.stats()

    return await eventually(
        probe,
        lambda s: s.unique_processed > 0,
        timeout=60,
        what="the worker to store its first events",
    )


async def drain(settings: Settings, log_path: Path) -> None:
    """Run ``python -m worker --drain`` to its end; it must exit 0."""
    with start_worker(settings, log_path, "--drain") as worker:
        code = await wait_for_exit(worker, DRAIN_TIMEOUT_S)
        assert code == 0, f"--drain exited {code}; log:\n{worker.log_text()[-4000:]}"
        assert "drain: queue" in worker.log_text()


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(240)
async def test_kill_9_mid_stream_then_drain_stores_everything_exactly_once(
    small_batches: Settings, tmp_path: Path
) -> None:
    settings = small_batches
    events = make_events(6000, "crash")
    # A producer that retried: 300 events sent twice, the copies shuffled into the stream.
    copies = events[::20]
    messages = wire(events + copies)
    random.Random(42).shuffle(messages)
    await publish_raw(settings, messages)
    assert await queue_depth(settings, settings.queue) == len(messages)

    store = await open_store(settings)
    try:
        with start_worker(settings, tmp_path / "worker-killed.log") as worker:
            await first_events_stored(store, worker)
            worker.kill()
            assert worker.popen.returncode == -signal.SIGKILL, worker.log_text()[-4000:]
        at_kill = await store.stats()
        assert 0 < at_kill.unique_processed < len(events), (
            f"the kill did not land mid-stream: {at_kill}"
        )

        await drain(settings, tmp_path / "worker-drain.log")

        stats = await assert_stored_exactly_once(store, settings, events)
        assert stats.duplicate_dropped >= len(copies), stats
        # Every published message was counted at least once (redeliveries count again).
        assert stats.received >= len(messages), stats
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(180)
async def test_drain_exits_zero_once_the_queue_is_empty(settings: Settings, tmp_path: Path) -> None:
    events = make_events(3000, "drain")
    await publish_raw(settings, wire(events))
    assert await queue_depth(settings, settings.queue) == len(events)

    await drain(settings, tmp_path / "worker-drain.log")

    store = await open_store(settings)
    try:
        stats = await assert_stored_exactly_once(store, settings, events)
        assert stats.received == len(events), stats
        assert stats.duplicate_dropped == 0, stats
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_drain_without_a_broker_fails_fast_and_names_it(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    settings = make_settings(f"amqp://guest:secret@127.0.0.1:{port}/", tmp_path)
    started = time.monotonic()
    with start_worker(settings, tmp_path / "worker.log", "--drain") as worker:
        code = await wait_for_exit(worker, 30)
        elapsed = time.monotonic() - started
        log = worker.log_text()
    assert code != 0, log
    assert elapsed < 20, f"took {elapsed:.1f}s to give up; log:\n{log}"
    assert "cannot reach the broker" in log, log
    assert f"127.0.0.1:{port}" in log, log
    assert "secret" not in log, "the password must not be logged"
    assert "Traceback" not in log, f"a clear message, not a stack trace:\n{log}"


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(240)
async def test_sigterm_mid_stream_stops_cleanly_and_drain_stores_the_rest(
    small_batches: Settings, tmp_path: Path
) -> None:
    settings = small_batches
    events = make_events(4000, "term")
    messages = wire(events)
    chunk = 250

    first, rest = messages[:chunk], messages[chunk:]

    async def produce() -> None:
        """A producer streaming while the worker consumes, one confirmed chunk at a time."""
        for start in range(0, len(rest), chunk):
            await publish_raw(settings, rest[start : start + chunk])

    store = await open_store(settings)
    try:
        # Declare the topology and queue a first chunk, so the worker starts on a stream.
        await publish_raw(settings, first)
        with start_worker(settings, tmp_path / "worker-stopped.log") as worker:
            producer = asyncio.create_task(produce())
            try:
                await first_events_stored(store, worker)
                signalled = time.monotonic()
                worker.signal(signal.SIGTERM)
                code = await wait_for_exit(worker, STOP_DEADLINE_S)
                stopped_after = time.monotonic() - signalled
            finally:
                await producer
            log = worker.log_text()
        assert code == 0, f"SIGTERM: exit {code}; log:\n{log[-4000:]}"
        assert stopped_after < STOP_DEADLINE_S
        assert "stopping" in log and "worker closed" in log, log[-4000:]
        at_stop = await store.stats()
        assert 0 < at_stop.unique_processed < len(events), (
            f"SIGTERM did not land mid-stream: {at_stop}"
        )

        await drain(settings, tmp_path / "worker-drain.log")

        stats = await assert_stored_exactly_once(store, settings, events)
        # A clean stop acks everything it stored, so nothing comes back as a duplicate.
        assert stats.duplicate_dropped == 0, stats
        assert stats.received == len(events), stats
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_sigterm_while_waiting_for_the_broker_exits_zero_quickly(tmp_path: Path) -> None:
    # Containers start in any order: a worker still retrying its first connect must stop on
    # SIGTERM within the contract's 10 s too, not when its connect window runs out.
    settings = make_settings(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", tmp_path, connect_timeout_s=60.0
    )
    with start_worker(settings, tmp_path / "worker.log") as worker:
        await eventually(
            lambda: asyncio.to_thread(worker.log_text),
            lambda log: "does not answer" in log,
            timeout=30,
            what="the worker to retry its first connect",
        )
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = await wait_for_exit(worker, STOP_DEADLINE_S)
        stopped_after = time.monotonic() - signalled
        log = worker.log_text()
    assert code == 0, f"SIGTERM: exit {code}; log:\n{log[-4000:]}"
    assert stopped_after < STOP_DEADLINE_S
    assert "stopping" in log and "worker closed" in log, log[-4000:]
