"""The store down for a minute: the worker holds its deliveries, dead-letters nothing, recovers.

Real workers (``python -m worker``) on the real broker, with the store failing the way it does
for operators: a full disk, a lock another process holds, the database file deleted. The
quorum queue's delivery limit is set to 2, so any redelivery loop would dead-letter events
within seconds; a store outage must cause none.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aggregator.settings import Settings
from aggregator.store import SqliteStore
from tests.conftest import make_settings
from tests.support.broker import delete_topology, publish_raw, queue_depth
from tests.support.exactly_once import (
    assert_stored_exactly_once,
    make_events,
    wait_for_exit,
    wire,
)
from tests.support.processes import Process, free_port, start_api, start_worker
from tests.support.tmpfs import tmpfs
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]

OUTAGE_S = 60.0
EVENTS = 3000


@contextlib.asynccontextmanager
async def outage_settings(amqp_url: str, tmp_path: Path, db_path: Path) -> AsyncIterator[Settings]:
    settings = make_settings(
        amqp_url,
        tmp_path,
        db_path=db_path,
        host="127.0.0.1",
        metrics_port=free_port(),
        sqlite_busy_timeout_ms=200,
        delivery_limit=2,
    )
    try:
        yield settings
    finally:
        await delete_topology(settings)


async def store_up(settings: Settings, client: httpx.AsyncClient) -> float | None:
    """The worker's ``agg_worker_store_up``, or None while its metrics do not answer."""
    try:
        text = (await client.get(f"http://127.0.0.1:{settings.metrics_port}/metrics")).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith("agg_worker_store_up "):
            return float(line.split()[1])
    return None


async def hold_and_check(settings: Settings, worker: Process, client: httpx.AsyncClient) -> None:
    """Wait for the outage to show, then hold it for OUTAGE_S, checking nothing moves."""
    await eventually(
        lambda: store_up(settings, client),
        lambda up: up == 0,
        timeout=60,
        what="the worker to report the store down",
    )
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, worker.log_text()[-3000:]
        assert await queue_depth(settings, settings.dead_letter_queue) == 0
        assert await store_up(settings, client) == 0
        await asyncio.sleep(2)  # poll interval with a deadline: the outage lasts OUTAGE_S
    # Said once per state change, not once per attempt.
    assert worker.log_text().count("store unavailable") == 1, worker.log_text()[-3000:]


async def disk_full_for_a_minute(amqp_url: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    events = make_events(EVENTS, "full")
    with tmpfs(tmp_path / "small-disk", "512k") as disk:
        db_path = disk.path / "aggregator.db"
        async with outage_settings(amqp_url, tmp_path / "full", db_path) as settings:
            (tmp_path / "full").mkdir(exist_ok=True)
            with start_worker(settings, tmp_path / "full" / "worker.log") as worker:
                await publish_raw(settings, wire(events))
                await hold_and_check(settings, worker, client)
                disk.resize("64m")
                store = await SqliteStore.open(db_path)
                try:
                    await eventually(
                        store.stats,
                        lambda s: s.received >= EVENTS,
                        timeout=60,
                        what="every event stored once the disk has room",
                    )
                    await eventually(
                        lambda: store_up(settings, client), lambda up: up == 1, what="store up"
                    )
                    assert "store available again" in worker.log_text()
                    await assert_stored_exactly_once(store, settings, events)
                finally:
                    await store.close()


async def locked_for_a_minute_then_sigterm(
    amqp_url: str, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    events = make_events(EVENTS, "locked")
    base = tmp_path / "locked"
    base.mkdir()
    async with outage_settings(amqp_url, base, base / "aggregator.db") as settings:
        store = await SqliteStore.open(settings.db_path)
        # Another process takes the write lock and keeps it until its stdin closes.
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys\n"
                f"db = sqlite3.connect({str(settings.db_path)!r}, isolation_level=None)\n"
                "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            with start_worker(settings, base / "worker.log") as worker:
                await publish_raw(settings, wire(events))
                await hold_and_check(settings, worker, client)
                # SIGTERM during the outage: the deliveries go back, the worker exits 0 in 10 s.
                stopped = time.monotonic()
                worker.signal(signal.SIGTERM)
                code = await wait_for_exit(worker, 10)
                assert code == 0, worker.log_text()[-3000:]
                assert time.monotonic() - stopped < 10
            assert (await store.stats()).received == 0
            assert await queue_depth(settings, settings.queue) == EVENTS
            holder.communicate(timeout=10)  # closes its stdin: it lets go of the lock
            assert holder.returncode == 0
            with start_worker(settings, base / "drain.log", "--drain") as drain:
                assert await wait_for_exit(drain, 120) == 0, drain.log_text()[-3000:]
            await assert_stored_exactly_once(store, settings, events)
        finally:
            holder.kill()
            holder.communicate()  # reaps it and closes its pipes
            await store.close()


@pytest.mark.timeout(300)
async def test_a_full_disk_and_a_held_lock_for_a_minute_lose_and_dead_letter_nothing(
    amqp_url: str, tmp_path: Path
) -> None:
    """Both outages at once, each with its own worker, queue and store (one minute, not two)."""
    async with httpx.AsyncClient(timeout=2) as client:
        await asyncio.gather(
            disk_full_for_a_minute(amqp_url, tmp_path, client),
            locked_for_a_minute_then_sigterm(amqp_url, tmp_path, client),
        )


@pytest.mark.timeout(120)
async def test_a_deleted_database_file_is_an_outage_not_a_void(
    amqp_url: str, tmp_path: Path
) -> None:
    db_path = tmp_path / "data" / "aggregator.db"
    async with outage_settings(amqp_url, tmp_path, db_path) as settings:
        before, after = make_events(200, "before"), make_events(200, "after")
        api_settings = settings.model_copy(update={"port": free_port()})
        with (
            start_worker(settings, tmp_path / "worker.log") as worker,
            start_api(api_settings, tmp_path / "api.log") as api,
        ):
            store = await SqliteStore.open(db_path)
            async with httpx.AsyncClient(base_url=api.base_url, timeout=5) as client:
                await publish_raw(settings, wire(before))
                await eventually(store.stats, lambda s: s.received == 200, what="first 200")
                backup = tmp_path / "backup.db"
                with sqlite3.connect(db_path) as source, sqlite3.connect(backup) as target:
                    source.backup(target)
                await store.close()
                for path in db_path.parent.iterdir():
                    path.unlink()

                await publish_raw(settings, wire(after))
                await eventually(
                    lambda: store_up(settings, client), lambda up: up == 0, what="store down"
                )
                readiness = await client.get("/readyz")
                assert readiness.status_code == 503
                assert "deleted" in readiness.json()["store"]
                # Nothing acked into the unlinked file: the 200 are held, not gone.
                assert await queue_depth(settings, settings.dead_letter_queue) == 0
                assert worker.popen.poll() is None

                backup.rename(db_path)
                await eventually(
                    lambda: store_up(settings, client), lambda up: up == 1, what="store back"
                )
                assert (await client.get("/readyz")).status_code == 200
            store = await SqliteStore.open(db_path)
            try:
                await eventually(store.stats, lambda s: s.received == 400, what="all 400")
                await assert_stored_exactly_once(store, settings, before + after)
            finally:
                await store.close()
