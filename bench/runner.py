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
from typing import Any

import aio_pika
import httpx
import orjson

from aggregator.connection import connect_once
from aggregator.settings import Settings
from aggregator.store import SqliteStore, Stats
from aggregator.topology import delete_topology

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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
