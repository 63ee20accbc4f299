"""Watching worker processes from the outside, with deadlines: the lines they log, the metrics
they serve, the store they fill."""

from __future__ import annotations

import asyncio
import re

import httpx

from aggregator.store import DedupStore, Stats
from tests.support.processes import Process
from tests.support.waiting import eventually

# Generous for 20,000 events on a loaded 2-core machine (a few seconds when it is idle).
RUN_TIMEOUT_S = 180.0
# The contract: SIGTERM -> exit 0 within 10 s.
STOP_DEADLINE_S = 10.0

STARTED = re.compile(r"started worker (\d+) of (\d+): pid=(\d+)")
EXITED = re.compile(r"worker (\d+) \(pid=(\d+)\) exited with status (-?\d+)")
CONSUMING = re.compile(r"consuming queue=\S+ .* pid=(\d+)")
CONSUMED_METRIC = re.compile(r"^agg_worker_events_consumed_total (\S+)$", re.M)


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
