"""Limits that hold: slow clients are cut off, and the API stays fast while they try."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from aggregator.settings import Settings
from tests.support.broker import event_body
from tests.support.processes import ApiProcess, free_port, start_api
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SLOW_CLIENTS = 300
DEADLINE_S = 2.0


@contextlib.contextmanager
def api(settings: Settings, tmp_path: Path, **overrides: object) -> Iterator[ApiProcess]:
    update = {"port": free_port(), "header_timeout_s": DEADLINE_S, "body_timeout_s": DEADLINE_S}
    with start_api(settings.model_copy(update={**update, **overrides}), tmp_path / "api.log") as p:
        yield p


@contextlib.asynccontextmanager
async def slow_clients(
    port: int, count: int, first_bytes: bytes
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """``count`` connections that send ``first_bytes`` and then nothing."""
    clients = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(first_bytes)
            await writer.drain()
            clients.append((reader, writer))
        yield clients
    finally:
        for _, writer in clients:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before it closed the connection (fails after ``within`` seconds)."""
    async with asyncio.timeout(within):
        return await reader.read()


@pytest.mark.timeout(120)
async def test_300_slow_clients_while_publish_stays_fast(
    settings: Settings, tmp_path: Path
) -> None:
    with api(settings, tmp_path) as process:
        async with httpx.AsyncClient(base_url=process.base_url) as client:
            await eventually(
                lambda: client.get("/readyz"), lambda r: r.status_code == 200, what="ready"
            )
            partial = b"POST /publish HTTP/1.1\r\nHost: aggregator\r\nContent-Ty"
            async with slow_clients(settings_port(process), SLOW_CLIENTS, partial) as clients:
                took = []
                for i in range(10):
                    started = time.monotonic()
                    response = await client.post("/publish", json=event_body(f"fast-{i}"))
                    took.append(time.monotonic() - started)
                    assert response.status_code == 202, response.text
                assert max(took) < 1.0, took
                # Each slow client is cut off once its headers are late (nothing answered).
                answers = await asyncio.gather(
                    *(closed_by_server(reader, DEADLINE_S + 10) for reader, _ in clients)
                )
                assert all(answer == b"" for answer in answers)


def settings_port(process: ApiProcess) -> int:
    return int(process.base_url.rsplit(":", 1)[1])


@pytest.mark.timeout(60)
async def test_a_slow_body_gets_408(settings: Settings, tmp_path: Path) -> None:
    with api(settings, tmp_path) as process:
        head = (
            b"POST /publish HTTP/1.1\r\nHost: aggregator\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"topic": '
        )
        async with slow_clients(settings_port(process), 1, head) as [(reader, _)]:
            started = time.monotonic()
            async with asyncio.timeout(DEADLINE_S + 5):
                status_line = await reader.readline()
            answered_after = time.monotonic() - started
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
        assert DEADLINE_S - 0.5 < answered_after < DEADLINE_S + 5, answered_after


@pytest.mark.timeout(60)
async def test_past_the_concurrency_cap_503_at_once(settings: Settings, tmp_path: Path) -> None:
    with api(settings, tmp_path, max_concurrent_requests=2, body_timeout_s=30) as process:
        head = (
            b"POST /publish HTTP/1.1\r\nHost: aggregator\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        async with (
            httpx.AsyncClient(base_url=process.base_url) as client,
            slow_clients(settings_port(process), 2, head),
        ):

            async def third() -> httpx.Response:
                return await client.post("/publish", json=event_body("third"))

            # The two slow requests are in the app (reading their bodies): the third is refused.
            response = await eventually(third, lambda r: r.status_code == 503, what="a 503")
            assert response.headers["retry-after"] == "1"
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
