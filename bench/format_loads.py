"""The ingest formats' load: every request body of a load built before the clock starts, then
sent ``concurrency`` in flight, one keep-alive connection each (``python -m bench.formats load``).

The records are alike: the native event's payload (level, message, a counter, 40 bytes of
padding) as an OTLP record's body and attributes from 8 services, or as a Fluent Bit-like record
(a ``date`` double, no id field, so its id is a hash) for 8 topics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bench.events import TOPICS, make_workload

FORMATS = ("native", "otlp", "ndjson")
BATCH = 1000
CONCURRENCY = 4
# 2026-11-24T10:00:00Z, in the units each format uses.
START_S = 1_795_514_400
PAD = "x" * 40


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    content_type: str
    events: int


def build(fmt: str, count: int, seed: int) -> list[Request]:
    """Every request of a load of ``count`` events in ``fmt``, in sending order."""
    chunks = [range(first, min(first + BATCH, count)) for first in range(0, count, BATCH)]
    if fmt == "native":
        bodies = make_workload(count, seed=seed).bodies
        return [
            Request(
                "/publish",
                b"[" + b",".join(bodies[i] for i in chunk) + b"]",
                "application/json",
                len(chunk),
            )
            for chunk in chunks
        ]
    if fmt == "otlp":
        return [
            Request("/v1/logs", _otlp(chunk, seed), "application/x-protobuf", len(chunk))
            for chunk in chunks
        ]
    if fmt == "ndjson":
        return [
            Request(
                f"/ingest/{TOPICS[number % len(TOPICS)]}",
                _ndjson(chunk, seed),
                "application/x-ndjson",
                len(chunk),
            )
            for number, chunk in enumerate(chunks)
        ]
    raise ValueError(f"unknown format {fmt!r}")


def _value(text: str | int) -> AnyValue:
    return AnyValue(int_value=text) if isinstance(text, int) else AnyValue(string_value=text)


def _otlp(chunk: range, seed: int) -> bytes:
    services: dict[int, list[LogRecord]] = {}
    for i in chunk:
        services.setdefault(i % len(TOPICS), []).append(
            LogRecord(
                time_unix_nano=START_S * 10**9 + i * 1000,
                severity_number=9,  # type: ignore[arg-type]
                severity_text="INFO",
                body=_value("user action recorded"),
                attributes=[
                    KeyValue(key="n", value=_value(i)),
                    KeyValue(key="seed", value=_value(seed)),
                    KeyValue(key="pad", value=_value(PAD)),
                ],
            )
        )
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=_value(f"svc-{k}"))]
                ),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name="app", version="1.0"), log_records=records
                    )
                ],
            )
            for k, records in services.items()
        ]
    )
    return request.SerializeToString()


def _ndjson(chunk: range, seed: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "date": START_S + i / 1000,
                "log": "user action recorded",
                "level": "info",
                "n": i,
                "seed": seed,
                "pad": PAD,
            }
        )
        + b"\n"
        for i in chunk
    )


async def load(url: str, requests: list[Request], concurrency: int) -> dict[str, float]:
    """Send every request, ``concurrency`` in flight, one connection each; retry a 503 or 429
    after its Retry-After. Returns events/s from the first send to the last answer."""
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    confirmed = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal confirmed
        while not queue.empty():
            request = queue.get_nowait()
            while True:
                response = await client.post(
                    request.path,
                    content=request.body,
                    headers={"content-type": request.content_type},
                )
                if response.status_code not in (429, 503):
                    break
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            if not response.is_success or b"partialSuccess" in response.content:
                raise RuntimeError(
                    f"POST {request.path}: {response.status_code} {response.text[:300]}"
                )
            confirmed += request.events

    clients = [
        httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=1))
        for _ in range(concurrency)
    ]
    started_at = time.time()
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(client) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    elapsed = time.perf_counter() - started
    return {
        "events_per_s": confirmed / elapsed,
        "confirmed": confirmed,
        "requests": len(requests),
        "started_at": started_at,
    }
