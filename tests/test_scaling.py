"""Several worker processes on one machine sharing one SQLite store, on a real broker.

Three workers, supervised (``python -m worker --workers 3``) or independent, consume one queue
and write one database file (WAL, busy timeout, a ``BEGIN IMMEDIATE`` transaction per batch).
Whatever worker a delivery lands on, every distinct ``(topic, event_id)`` must be stored exactly
once and the counters must add up; and more than one worker must really have done the work.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import re
import signal
import socket
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import httpx
import pytest

from aggregator.healthcheck import answers, probes_for
from aggregator.settings import Settings
from aggregator.store import DedupStore, SqliteStore, Stats
from tests.support.broker import event_body, publish_raw, queue_depth
from tests.support.exactly_once import (
    assert_stored_exactly_once,
    make_events,
    wait_for_exit,
    wire,
)
from tests.support.processes import Process, free_port, start_worker
from tests.support.waiting import eventually
from worker.supervisor import worst_status

PUBLISHED = 20_000
# 20% of what is published repeats an earlier event (some more than once), shuffled in.
DUPLICATES = PUBLISHED // 5
DISTINCT = PUBLISHED - DUPLICATES
WORKERS = 3
# Generous for 20,000 events on a loaded 2-core machine (a few seconds when it is idle).
RUN_TIMEOUT_S = 180.0
# The contract: SIGTERM -> exit 0 within 10 s.
STOP_DEADLINE_S = 10.0
# Two processes opening one new store file at once, this many times (about 0.1 s a round).
STORE_OPEN_ROUNDS = 60

STARTED = re.compile(r"started worker (\d+) of (\d+): pid=(\d+)")
EXITED = re.compile(r"worker (\d+) \(pid=(\d+)\) exited with status (-?\d+)")
CONSUMING = re.compile(r"consuming queue=\S+ .* pid=(\d+)")
DRAINED = re.compile(r"drain: queue \S+ is empty, (\d+) deliveries handled pid=(\d+)")
CONSUMED_METRIC = re.compile(r"^agg_worker_events_consumed_total (\S+)$", re.M)


def events_with_duplicates(seed: int) -> tuple[list[dict[str, object]], list[tuple[str, bytes]]]:
    """:data:`DISTINCT` events, and :data:`PUBLISHED` messages: each event once plus
    :data:`DUPLICATES` repeats of random ones, shuffled so copies land on different workers."""
    rng = random.Random(seed)
    events = make_events(DISTINCT, f"scale{seed}")
    messages = wire(events + rng.choices(events, k=DUPLICATES))
    rng.shuffle(messages)
    return events, messages


def consecutive_free_ports(count: int) -> int:
    """A base port such that ``base .. base + count - 1`` are all free on loopback now."""
    for _ in range(50):
        base = free_port()
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError(f"found no {count} consecutive free ports")


async def log_matches(
    process: Process, pattern: re.Pattern[str], count: int
) -> list[tuple[str, ...]]:
    """Poll ``process``'s log until ``pattern`` matched ``count`` lines; fail if it exited."""

    async def probe() -> list[tuple[str, ...]]:
        text = await asyncio.to_thread(process.log_text)
        if process.popen.poll() is not None:
            raise AssertionError(f"exited {process.popen.returncode}; log:\n{text[-4000:]}")
        return [match.groups() for match in pattern.finditer(text)]

    return await eventually(
        probe, lambda found: len(found) >= count, timeout=30, what=f"{count} x {pattern.pattern}"
    )


async def consumed_on(port: int) -> int:
    """``agg_worker_events_consumed_total`` as the worker on ``port`` serves it."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    match = CONSUMED_METRIC.search(text)
    assert match, text[:2000]
    return int(float(match.group(1)))


async def wait_for_received(store: DedupStore, expected: int, workers: list[Process]) -> Stats:
    async def probe() -> Stats:
        for worker in workers:
            if worker.popen.poll() is not None:
                raise AssertionError(
                    f"a worker exited {worker.popen.returncode}; log:\n{worker.log_text()[-4000:]}"
                )
        return await store.stats()

    return await eventually(
        probe,
        lambda stats: stats.received >= expected,
        timeout=RUN_TIMEOUT_S,
        what=f"the workers to receive {expected} events",
    )


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


def test_worst_status_reports_any_failure_and_deaths_by_signal_as_128_plus_n() -> None:
    assert worst_status([0, 0, 0]) == 0
    assert worst_status([]) == 0
    assert worst_status([0, 2, 1]) == 2
    assert worst_status([0, -signal.SIGKILL, 2]) == 128 + signal.SIGKILL


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


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_supervised_workers_serve_their_own_metrics_ports_and_stop_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    base = consecutive_free_ports(2)
    own = settings.model_copy(update={"metrics_port": base, "host": "127.0.0.1"})
    # What the container's healthcheck asks when PID 1 is `python -m worker --workers 2`.
    probes = probes_for(["python", "-m", "worker", "--workers", "2"], own)
    assert [probe.url for probe in probes] == [
        f"http://127.0.0.1:{base}/metrics",
        f"http://127.0.0.1:{base + 1}/metrics",
    ]
    with start_worker(own, tmp_path / "workers.log", "--workers", "2") as group:
        await log_matches(group, CONSUMING, 2)
        assert all(await asyncio.gather(*(asyncio.to_thread(answers, p) for p in probes)))

        events = make_events(300, "metrics")
        await publish_raw(settings, wire(events))
        store = await SqliteStore.open(settings.db_path)
        try:
            await wait_for_received(store, len(events), [group])
        finally:
            await store.close()
        consumed = [await consumed_on(port) for port in (base, base + 1)]
        assert sum(consumed) == len(events), consumed

        signalled = time.monotonic()
        group.signal(signal.SIGTERM)
        code = await wait_for_exit(group, STOP_DEADLINE_S)
        stopped_after = time.monotonic() - signalled
        log = group.log_text()
    assert code == 0, f"SIGTERM: exit {code}; log:\n{log[-4000:]}"
    assert stopped_after < STOP_DEADLINE_S
    assert [status for _, _, status in EXITED.findall(log)] == ["0", "0"], log[-4000:]
    assert log.count("worker closed") == 2, log[-4000:]
    # Nothing answers any more: the healthcheck says unhealthy.
    assert not any(await asyncio.gather(*(asyncio.to_thread(answers, p) for p in probes)))


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_a_worker_that_dies_stops_the_group_with_its_status(
    settings: Settings, tmp_path: Path
) -> None:
    await publish_raw(settings, wire([event_body("first")]))
    with start_worker(settings, tmp_path / "workers.log", "--workers", "2") as group:
        started = await log_matches(group, STARTED, 2)
        await log_matches(group, CONSUMING, 2)
        victim = next(int(pid) for number, _, pid in started if number == "2")
        # Only the child this test's supervisor started, by its pid.
        os.kill(victim, signal.SIGKILL)
        code = await wait_for_exit(group, STOP_DEADLINE_S)
        log = group.log_text()
    assert code == 128 + signal.SIGKILL, log[-4000:]
    assert "worker 2 stopped on its own; stopping the others" in log, log[-4000:]
    exits = {number: int(status) for number, _, status in EXITED.findall(log)}
    assert exits == {"2": -signal.SIGKILL, "1": 0}, log[-4000:]
