"""Processes and broker plumbing for the benchmark: every figure runs in its own namespace.

Each measurement gets fresh exchange and queue names and a fresh SQLite file, runs the API,
the worker, the raw gateway or the load generator as separate processes (as users run them),
and deletes its queues afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aio_pika
import httpx
import orjson

from aggregator.connection import connect_once
from aggregator.settings import Settings
from aggregator.store import SqliteStore, Stats, open_store
from aggregator.topology import declare_topology, delete_topology
from bench import raw
from bench.events import Workload

REPO = Path(__file__).resolve().parents[1]


def fresh_settings(amqp_url: str, workdir: Path, queue_type: str, **overrides: Any) -> Settings:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "db_path": workdir / f"{name}.db",
        "exchange": name,
        "queue": f"{name}.q",
        "queue_type": queue_type,
        "host": "127.0.0.1",
        "port": free_port(),
        "log_level": "WARNING",
        "metrics_port": 0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_")}
    env.update(settings.as_environment())
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def process(
    args: Sequence[str], env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``python ARGS`` in the background; terminated (then killed) on exit."""
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def wait_http(url: str, child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200 (with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"process exited with {child.returncode} before {url} answered")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)  # poll interval
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")


def run_json(args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python ARGS`` to completion and parse the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"python {' '.join(args)} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}"
        )
    last = done.stdout.decode().strip().splitlines()[-1]
    result: dict[str, Any] = orjson.loads(last)
    return result


def last_json_line(path: Path) -> dict[str, Any]:
    """The JSON object on the last line of a process's output."""
    result: dict[str, Any] = orjson.loads(path.read_text().strip().splitlines()[-1])
    return result


async def delete_names(settings: Settings) -> None:
    connection = await connect_once(settings)
    async with connection:
        await delete_topology(await connection.channel(), settings)


async def queue_depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def read_stats(db_path: Path) -> Stats:
    store = await SqliteStore.open(db_path)
    try:
        return await store.stats()
    finally:
        await store.close()


async def poll_stats(
    db_path: Path, until_received: int, timeout: float, interval: float = 0.01
) -> tuple[float, int, float]:
    """Poll the store until ``received`` reaches ``until_received``.

    Returns (time of the first non-zero reading, ``received`` then, time of the last reading).
    """
    store = await SqliteStore.open(db_path)
    try:
        first_at, first_received = 0.0, 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = await store.stats()
            now = time.time()
            if stats.received and not first_at:
                first_at, first_received = now, stats.received
            if stats.received >= until_received:
                return first_at, first_received, now
            await asyncio.sleep(interval)  # poll interval, with a deadline
        raise RuntimeError(f"the store did not reach {until_received} received in {timeout:g}s")
    finally:
        await store.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stat(path: Path) -> tuple[int, float]:
    """A ``/proc/PID/stat`` file's parent pid and CPU seconds (user + system); OSError once the
    process is gone. The fields after the command name, which may hold spaces or parentheses."""
    fields = path.read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (``/proc/PID/stat``)."""
    return _stat(Path(f"/proc/{pid}/stat"))[1]


async def prefill_product_queue(settings: Settings, workload: Workload) -> None:
    """Declare the product's topology (quorum, dead-lettering) and publish ``workload`` into it.

    Through the first node of ``settings.amqp_url``, with the raw publisher's speed.
    """
    connection = await connect_once(settings)
    async with connection:
        await declare_topology(await connection.channel(), settings)
    await raw.publish_to(settings.amqp_urls[0], settings.exchange, workload, window=1000)


class Drain(NamedTuple):
    """A timed drain: events per second, and the worker processes' CPU µs per event."""

    rate: float
    cpu_us: float


def drain_rate(start: tuple[float, int], end: tuple[float, int]) -> float:
    """Events per second between two (time, ``received``) readings of the store."""
    (started_at, received_then), (ended_at, received_at_end) = start, end
    if received_then >= received_at_end or ended_at <= started_at:
        raise RuntimeError(
            f"nothing left to time: {received_then} of {received_at_end} were received before"
            " every worker consumed; measure with more events"
        )
    return (received_at_end - received_then) / (ended_at - started_at)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children: ``--workers N``'s
    supervisor and its workers."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent, seconds = _stat(stat)
        except OSError:
            continue  # a process that ended meanwhile
        if stat.parent.name == str(pid) or parent == pid:
            total += seconds
    return total


async def timed_drain(
    settings: Settings, count: int, workers: int, log_path: Path, timeout: float = 600.0
) -> Drain:
    """``python -m worker --workers N`` drains a pre-filled queue into the settings' store.

    Timed from the first reading at which all N consumers are on the queue and something is
    stored, to the reading at which ``received`` reaches ``count``: the workers' start-up
    (and the first of them draining alone while the others start) is left out, of the rate
    and of the CPU time alike.
    """
    command = ["-m", "worker", "--workers", str(workers)]
    connection = await connect_once(settings)
    async with connection:
        channel = await connection.channel()
        store = await open_store(settings)
        try:
            with process(command, env_for(settings), log_path) as worker:
                start: tuple[float, int] | None = None
                start_cpu = 0.0
                attached = False
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited with {worker.returncode}")
                    if not attached:
                        queue = await channel.declare_queue(settings.queue, passive=True)
                        attached = (queue.declaration_result.consumer_count or 0) >= workers
                    received = (await store.stats()).received
                    now = time.time()
                    if attached and start is None and received:
                        start, start_cpu = (now, received), tree_cpu_s(worker.pid)
                    if received >= count:
                        rate = drain_rate(start or (now, received), (now, received))
                        events = received - (start or (now, received))[1]
                        cpu = tree_cpu_s(worker.pid) - start_cpu
                        return Drain(rate, cpu / events * 1e6)
                    await asyncio.sleep(0.02)  # poll interval, with a deadline
                raise RuntimeError(f"the store did not reach {count} received in {timeout:g}s")
        finally:
            await store.close()


async def read_store_stats(settings: Settings) -> Stats:
    """The counters of the settings' store (SQLite or PostgreSQL)."""
    store = await open_store(settings)
    try:
        return await store.stats()
    finally:
        await store.close()
