"""``python -m worker --workers N`` as one group on a real broker: its exit status, each child on
a metrics port of its own (what the container's healthcheck asks), SIGTERM to all, a child that
dies taking the group down with its status."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from aggregator.healthcheck import answers, probes_for
from aggregator.settings import Settings
from aggregator.store import SqliteStore
from tests.support.broker import event_body, publish_raw
from tests.support.exactly_once import make_events, wait_for_exit, wire
from tests.support.processes import free_port, start_worker
from tests.support.worker_watch import (
    CONSUMING,
    EXITED,
    STARTED,
    STOP_DEADLINE_S,
    consumed_on,
    log_matches,
    wait_for_received,
)
from worker.supervisor import worst_status


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


def test_worst_status_reports_any_failure_and_deaths_by_signal_as_128_plus_n() -> None:
    assert worst_status([0, 0, 0]) == 0
    assert worst_status([]) == 0
    assert worst_status([0, 2, 1]) == 2
    assert worst_status([0, -signal.SIGKILL, 2]) == 128 + signal.SIGKILL


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
