"""Nothing hangs: a stop at any instant ends the process in time, a taken port ends it at once."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import time
from pathlib import Path

import pytest

from aggregator.settings import Settings
from tests.support.exactly_once import wait_for_exit
from tests.support.processes import ApiProcess, free_port, start_worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

STOP_DEADLINE_S = 10.0


async def sigterm_after(settings: Settings, log_path: Path, delay: float) -> tuple[int, float, str]:
    """Start a worker, SIGTERM it ``delay`` seconds later; its exit code, stop time and log."""
    with start_worker(settings, log_path) as worker:
        await asyncio.sleep(delay)  # the instant under test, not synchronisation
        stopped = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = await wait_for_exit(worker, STOP_DEADLINE_S + 5)
        return code, time.monotonic() - stopped, worker.log_text()


@pytest.mark.timeout(240)
async def test_sigterm_at_any_instant_of_the_start_ends_the_worker_in_time(
    settings: Settings, tmp_path: Path
) -> None:
    """20 starts, each stopped at a random instant of its first 1.5 s: connecting, declaring,
    opening the gauges' channel (where a swallowed cancel once hung the worker for good)."""
    rng = random.Random(8)
    delays = [rng.uniform(0, 1.5) for _ in range(20)]
    for start in range(0, len(delays), 4):  # four at a time, on two cores
        runs = [
            sigterm_after(
                settings.model_copy(
                    update={"metrics_port": free_port(), "metrics_interval_s": 0.05}
                ),
                tmp_path / f"worker-{i}.log",
                delays[i],
            )
            for i in range(start, min(start + 4, len(delays)))
        ]
        for i, (code, took, log) in enumerate(await asyncio.gather(*runs), start):
            assert took < STOP_DEADLINE_S, f"run {i} (SIGTERM at {delays[i]:.2f}s) took {took:.1f}s"
            # Before the handler is installed (still importing) SIGTERM kills; after, exit 0.
            assert code == 0 or (code == -signal.SIGTERM and not log.strip()), (i, code, log)


@pytest.mark.timeout(60)
async def test_the_api_exits_at_once_naming_a_taken_port(
    settings: Settings, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api_settings = settings.model_copy(update={"port": port, "host": "127.0.0.1"})
        api = ApiProcess(api_settings, tmp_path / "api.log")
        with api:
            code = await wait_for_exit(api, STOP_DEADLINE_S)
            log = api.log_text()
    assert code != 0
    lines = [line for line in log.splitlines() if str(port) in line]
    assert lines and "AGG_PORT" in lines[0], log
