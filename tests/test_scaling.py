"""Several worker processes on one machine sharing one SQLite store, on a real broker.

Three workers, supervised (``python -m worker --workers 3``) or independent, consume one queue
and write one database file (WAL, busy timeout, a ``BEGIN IMMEDIATE`` transaction per batch).
Whatever worker a delivery lands on, every distinct ``(topic, event_id)`` must be stored exactly
once and the counters must add up; and more than one worker must really have done the work.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import re
import signal
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.store import SqliteStore
from tests.support.broker import publish_raw, queue_depth
from tests.support.exactly_once import assert_stored_exactly_once, make_events, wait_for_exit, wire
from tests.support.processes import Process, free_port, start_worker
from tests.support.worker_watch import (
    CONSUMING,
    EXITED,
    RUN_TIMEOUT_S,
    STARTED,
    STOP_DEADLINE_S,
    consumed_on,
    log_matches,
    wait_for_received,
)

PUBLISHED = 20_000
# 20% of what is published repeats an earlier event (some more than once), shuffled in.
DUPLICATES = PUBLISHED // 5
DISTINCT = PUBLISHED - DUPLICATES
WORKERS = 3
# Two processes opening one new store file at once, this many times (about 0.1 s a round).
STORE_OPEN_ROUNDS = 60

DRAINED = re.compile(r"drain: queue \S+ is empty, (\d+) deliveries handled pid=(\d+)")


def events_with_duplicates(seed: int) -> tuple[list[dict[str, object]], list[tuple[str, bytes]]]:
    """:data:`DISTINCT` events, and :data:`PUBLISHED` messages: each event once plus
    :data:`DUPLICATES` repeats of random ones, shuffled so copies land on different workers."""
    rng = random.Random(seed)
    events = make_events(DISTINCT, f"scale{seed}")
    messages = wire(events + rng.choices(events, k=DUPLICATES))
    rng.shuffle(messages)
    return events, messages


def assert_no_store_contention_errors(log: str) -> None:
    """Contention between writers is absorbed by the busy timeout: no retry, no requeue."""
    for sign in ("database is locked", "store failed", "requeueing", "Traceback"):
        assert sign not in log, f"{sign!r} in the worker log:\n{log[-4000:]}"


def _open_new_store(path: Path, start: Barrier, stagger_s: float) -> None:
    """In a child process: open the store as a worker does, together with another process.

    An error propagates: the child exits 1 with the traceback on stderr."""
    start.wait()
    # Not synchronisation: a different small stagger each round moves where the two opens meet.
    time.sleep(stagger_s)
    asyncio.run(_open_and_close(path))


async def _open_and_close(path: Path) -> None:
    store = await SqliteStore.open(path)
    try:
        await store.stats()
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Workers (or containers on a fresh volume) open a store file that does not exist yet.
    # Switching a new file to WAL needs the others off it, and SQLite says "database is locked"
    # at once for that instead of waiting on the busy timeout: before DedupStore.open waited
    # for its turn, a few rounds in sixty failed so.
    # The children fork from a fresh server process with the store code loaded: quick to start,
    # and none of this test process's threads or event loop state comes along.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["aggregator.store", __name__])
    rng = random.Random(3)
    for round_number in range(STORE_OPEN_ROUNDS):
        path = tmp_path / f"round-{round_number}" / "aggregator.db"
        start = context.Barrier(2)
        children = [
            context.Process(target=_open_new_store, args=(path, start, rng.uniform(0, 0.01)))
            for _ in range(2)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=30)
        codes = [child.exitcode for child in children]
        assert codes == [0, 0], f"round {round_number}: exit codes {codes} (see stderr)"


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(420)
async def test_three_supervised_workers_drain_20000_events_with_20_percent_duplicates(
    settings: Settings, tmp_path: Path
) -> None:
    events, messages = events_with_duplicates(seed=7)
    await publish_raw(settings, messages)
    assert await queue_depth(settings, settings.queue) == PUBLISHED

    with start_worker(settings, tmp_path / "workers.log", "--workers", "3", "--drain") as group:
        code = await wait_for_exit(group, RUN_TIMEOUT_S)
        log = group.log_text()
    assert code == 0, f"--workers 3 --drain exited {code}; log:\n{log[-4000:]}"
    assert_no_store_contention_errors(log)

    children = {int(pid) for _, total, pid in STARTED.findall(log) if total == "3"}
    assert len(children) == WORKERS, log[-4000:]
    exits = {int(pid): int(status) for _, pid, status in EXITED.findall(log)}
    assert exits == dict.fromkeys(children, 0), log[-4000:]
    # Each child drained to an empty queue, between them every message, and more than one
    # of them had a share of it.
    handled = {int(pid): int(count) for count, pid in DRAINED.findall(log)}
    assert set(handled) == children, log[-4000:]
    assert sum(handled.values()) == PUBLISHED, handled
    assert sum(count > 0 for count in handled.values()) >= 2, handled

    store = await SqliteStore.open(settings.db_path)
    try:
        stats = await assert_stored_exactly_once(store, settings, events)
    finally:
        await store.close()
    assert stats.received == PUBLISHED, stats
    assert stats.unique_processed == DISTINCT, stats
    assert stats.duplicate_dropped == PUBLISHED - DISTINCT, stats


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(420)
async def test_three_independent_workers_share_the_store_while_events_are_published(
    settings: Settings, tmp_path: Path
) -> None:
    events, messages = events_with_duplicates(seed=11)
    ports = [free_port() for _ in range(WORKERS)]
    workers: list[Process] = []
    try:
        # No store exists yet: the three workers create it at once, as three containers
        # starting on a fresh volume do.
        for number, port in enumerate(ports, 1):
            own = settings.model_copy(update={"metrics_port": port, "host": "127.0.0.1"})
            workers.append(start_worker(own, tmp_path / f"worker-{number}.log"))
        for worker in workers:
            await log_matches(worker, CONSUMING, 1)

        store = await SqliteStore.open(settings.db_path)
        try:
            half = len(messages) // 2
            chunk = 1000

            async def publish(part: list[tuple[str, bytes]]) -> None:
                for start in range(0, len(part), chunk):
                    await publish_raw(settings, part[start : start + chunk])

            # The second half goes out while the workers are storing the first.
            await publish(messages[:half])
            await wait_for_received(store, 1, workers)
            await publish(messages[half:])

            await wait_for_received(store, PUBLISHED, workers)
            consumed = [await consumed_on(port) for port in ports]
            assert sum(consumed) == PUBLISHED, consumed
            assert all(count > 0 for count in consumed), f"a worker consumed nothing: {consumed}"

            for worker in workers:
                worker.signal(signal.SIGTERM)
            for worker in workers:
                code = await wait_for_exit(worker, STOP_DEADLINE_S)
                assert code == 0, f"SIGTERM: exit {code}; log:\n{worker.log_text()[-4000:]}"
                assert_no_store_contention_errors(worker.log_text())

            stats = await assert_stored_exactly_once(store, settings, events)
        finally:
            await store.close()
    finally:
        for worker in workers:
            worker.close()
    assert stats.received == PUBLISHED, stats
    assert stats.unique_processed == DISTINCT, stats
    assert stats.duplicate_dropped == PUBLISHED - DISTINCT, stats
