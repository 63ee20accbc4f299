"""Single events at saturation (issue 11): the product's ``POST /publish`` of one event beside
two bare gateways (``bench/raw_gateway.py``), in the same repeat, against the same broker: the
bare FastAPI + aio-pika gateway the issue's targets are set against, and the bare ASGI one, the
least the stack can do.

A closed loop: ``CONCURRENCY`` keep-alive connections, each sending its next request as soon as
the last one is answered, one event a request, a fixed number of requests in all. Both servers
answer 202 only once the broker confirmed the event. Two figures per server: requests per
second, and the server process's CPU time per request (``/proc/PID/stat``), the cost, which
other work on a shared machine disturbs far less than the rate.

Each server runs twice per repeat, in mirrored order (raw, product, product, raw), a fresh
process and queue each time, with a short warm-up before the clock starts; every run checks
that each request was answered 202 and that its queue holds every event.

The load is its own process (``python -m bench.single load --url U --count N``), so it does not
share the server's; it builds every request before the clock starts and parses answers with
httptools (the parser uvicorn uses), which costs the client less than an HTTP library would on
a machine it shares with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httptools
import orjson
import uvloop
import yarl

from aggregator.settings import Settings
from bench.events import make_workload
from bench.figures import Figures, check, declare_plain, raw_gateway_args
from bench.runner import (
    cpu_seconds,
    delete_names,
    env_for,
    process,
    queue_depth,
    run_json,
    wait_http,
)

CONCURRENCY = 32  # bench/report.py's row names it
WARMUP = 500
# Each server twice per repeat, in mirrored order: a machine that slows down or speeds up
# during the repeat weighs on all alike. "raw" is the bare ASGI gateway, "fastapi" the bare
# FastAPI one.
SERVERS = ("raw", "fastapi", "product")
ORDER = (*SERVERS, *reversed(SERVERS))


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request written, its whole answer awaited."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is an asyncio.Transport in all but its class hierarchy.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._parser.get_status_code(), bytes(self._body)))

    def _fail(self, exc: BaseException) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self._transport is not None
        self._body.clear()
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def requests_of(url: str, count: int, seed: int) -> list[bytes]:
    """``count`` ``POST /publish`` requests of one event each (distinct ids), as sent."""
    host = yarl.URL(url).raw_authority
    head = (
        f"POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n"
    ).encode()
    return [head % len(body) + body for body in make_workload(count, seed=seed).bodies]


async def load(url: str, count: int, seed: int, concurrency: int) -> dict[str, float]:
    """Send ``count`` single-event requests, ``concurrency`` connections in a closed loop.

    Raises on any answer but 202 or an ``accepted`` other than 1. Returns requests/s from the
    first send to the last answer, and how many events the server said it accepted.
    """
    requests = requests_of(url, count, seed)
    target = yarl.URL(url)
    if target.host is None or target.port is None:
        raise ValueError(f"{url}: no host and port")
    loop = asyncio.get_running_loop()
    connections: list[Connection] = []
    for _ in range(min(concurrency, count)):
        _, protocol = await loop.create_connection(Connection, target.host, target.port)
        connections.append(protocol)
    following = iter(requests)
    accepted = 0

    async def client(connection: Connection) -> None:
        nonlocal accepted
        for request in following:
            status, body = await connection.request(request)
            if status != 202:
                raise RuntimeError(f"POST /publish: {status} {body[:300]!r}")
            taken = orjson.loads(body)["accepted"]
            if taken != 1:
                raise RuntimeError(f"POST /publish of one event: accepted {taken}")
            accepted += taken

    started_at = time.time()
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(client(connection)) for connection in connections]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # one failed: the others stop too, each exception retrieved
            task.cancel()
        for connection in connections:
            connection.close()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - started
    return {
        "requests_per_s": count / elapsed,
        "requests": count,
        "accepted": accepted,
        "started_at": started_at,
    }


def load_args(url: str, count: int, seed: int) -> list[str]:
    return ["-m", "bench.single", "load", "--url", url, "--count", str(count), "--seed", str(seed)]


async def measure(
    fresh: Callable[..., Settings], count: int, seed: int, work: Path, figures: Figures
) -> None:
    """One repeat: each server twice, ``count // 6`` requests a run, so a third of a throughput
    figure's events per server (one event a request is slow: the six runs of 8,333 take one to
    two minutes on 2 cores).

    Adds ``<server>.single_rps`` (requests/s, the mean of the two runs) and
    ``<server>.single_cpu_us`` (server CPU time per request) for each of ``SERVERS``.
    """
    rates: dict[str, list[float]] = {server: [] for server in SERVERS}
    cpu = dict.fromkeys(SERVERS, 0.0)
    each = max(count // len(ORDER), 1)
    for run, server in enumerate(ORDER):
        # The API as users run it: the default settings (loopback, AGG_AUTH on without a keys
        # file, no rate limit, access log off), at the default log level.
        settings = fresh(log_level="INFO")
        url = f"http://127.0.0.1:{settings.port}"
        if server in ("raw", "fastapi"):
            await declare_plain(settings)
            command, health = raw_gateway_args(settings), f"{url}/"
            if server == "fastapi":
                command.append("--fastapi")
        else:
            command, health = ["-m", "api"], f"{url}/readyz"
        log_path = work / f"{server}-single-{run}.log"
        with process(command, env_for(settings), log_path) as gateway:
            wait_http(health, gateway)
            warmup = run_json(load_args(url, WARMUP, seed + 500 + run))
            before = cpu_seconds(gateway.pid)
            result = run_json(load_args(url, each, seed + run))
            cpu[server] += cpu_seconds(gateway.pid) - before
        rates[server].append(float(result["requests_per_s"]))
        check(figures, f"{server} single-event warm-up accepted", WARMUP, int(warmup["accepted"]))
        check(figures, f"{server} single-event accepted", each, int(result["accepted"]))
        depth = await queue_depth(settings.amqp_url, settings.queue)
        check(figures, f"{server} single-event queue depth", WARMUP + each, depth)
        await delete_names(settings)
    for server in SERVERS:
        figures.add(f"{server}.single_rps", sum(rates[server]) / len(rates[server]))
        figures.add(f"{server}.single_cpu_us", cpu[server] / (each * len(rates[server])) * 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.single", description=__doc__)
    parser.add_argument("command", choices=["load"])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--count", type=int, default=20_000, help="requests, one event each")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    result = uvloop.run(load(args.url, args.count, args.seed, args.concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
