"""``python -m bench.store_writes``: how fast one writer stores batches, on either store.

A quick look at the store's write path alone (no broker, no decoding): the worker's batches of
500 deliveries, 30% of them duplicates, written one after another into a new SQLite file or a
new PostgreSQL database, the way one worker does. It only calls ``store_events``, so the same
script measures any commit of the store: check one out, run it, compare.

Two figures per run: events per second of wall time, and events per second of CPU time (this
process's, plus, for a local PostgreSQL, the server backends serving the store, read from
/proc). On a machine shared with other work the CPU figure is the steadier one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import orjson

from aggregator.events import Event
from aggregator.store import DedupStore, PostgresStore, SqliteStore
from bench.events import make_workload
from bench.runner import cpu_seconds

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _backend_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of local processes, by pid; those not readable are left out."""
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return seconds


async def _backends(admin_url: str, database: str) -> list[int]:
    admin = await asyncpg.connect(admin_url)
    try:
        rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    finally:
        await admin.close()
    return [int(row[0]) for row in rows]


async def _run_once(
    backend: str, events: list[Event], batch: int, admin_url: str
) -> tuple[float, float]:
    """Events offered per second (duplicates included) into a new store: wall, and CPU."""
    with tempfile.TemporaryDirectory(prefix="store-writes-") as directory:
        database = f"store_writes_{uuid.uuid4().hex[:12]}"
        store: DedupStore
        if backend == "sqlite":
            store = await SqliteStore.open(Path(directory) / "bench.db")
        else:
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f'CREATE DATABASE "{database}"')
            finally:
                await admin.close()
            store = await PostgresStore.open(admin_url.rsplit("/", 1)[0] + f"/{database}")
        try:
            server_before = (
                _backend_cpu_s(await _backends(admin_url, database))
                if backend == "postgres"
                else {}
            )
            cpu_started, started = time.process_time(), time.perf_counter()
            for start in range(0, len(events), batch):
                await store.store_events(events[start : start + batch])
            cpu = time.process_time() - cpu_started
            elapsed = time.perf_counter() - started
            if backend == "postgres":
                server_after = _backend_cpu_s(await _backends(admin_url, database))
                cpu += sum(t - server_before.get(pid, 0.0) for pid, t in server_after.items())
            stats = await store.stats()
            assert stats.received == len(events), stats
        finally:
            await store.close()
            if backend == "postgres":
                admin = await asyncpg.connect(admin_url)
                try:
                    await admin.execute(f'DROP DATABASE "{database}"')
                finally:
                    await admin.close()
    return len(events) / elapsed, len(events) / cpu


async def main(arguments: argparse.Namespace) -> None:
    workload = make_workload(arguments.events, dup_rate=arguments.dup_rate)
    events = [Event.model_validate(orjson.loads(body)) for body in workload.bodies]
    for backend in arguments.backends:
        runs = [
            await _run_once(backend, events, arguments.batch, arguments.admin_url)
            for _ in range(arguments.repeats)
        ]
        line: dict[str, object] = {"backend": backend, "events": len(events)}
        for name, rates in (("wall", [r[0] for r in runs]), ("cpu", [r[1] for r in runs])):
            line[f"{name}_median"] = round(statistics.median(rates))
            line[f"{name}_max"] = round(max(rates))
        sys.stdout.write(orjson.dumps(line).decode() + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.store_writes", description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--dup-rate", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL superuser's URL")
    asyncio.run(main(parser.parse_args()))
