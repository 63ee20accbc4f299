"""``Content-Encoding: gzip`` on every body: limits apply to the decompressed size, early."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from pathlib import Path

import httpx
import orjson
import pytest

from aggregator.settings import Settings
from api.body import Inflater
from api.errors import BadBody, BodyTooLarge
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, queue_depth
from tests.support.processes import free_port, start_api
from tests.support.running import api_client, running_worker
from tests.support.waiting import eventually

MIB = 1024 * 1024


def bomb(decompressed_mib: int) -> bytes:
    """``decompressed_mib`` MiB of zeros as gzip: members of 10 MiB, ~10 KB each, one after
    the other (a valid gzip stream), so even a gigabyte is cheap to make."""
    member = gzip.compress(bytes(10 * MIB), compresslevel=9)
    whole, rest = divmod(decompressed_mib, 10)
    return member * whole + (gzip.compress(bytes(rest * MIB)) if rest else b"")


def feed_in_chunks(inflater: Inflater, data: bytes, size: int = 65536) -> bytes:
    for start in range(0, len(data), size):
        inflater.feed(data[start : start + size])
    return inflater.finish()


def test_inflater_reads_gzip_in_any_chunking_and_several_members() -> None:
    text = b"".join(b"line %d\n" % i for i in range(20_000))
    packed = gzip.compress(text)
    for size in (1, 7, 4096, len(packed)):
        assert feed_in_chunks(Inflater(len(text)), packed, size) == text
    two = gzip.compress(b"first ") + gzip.compress(b"second")
    assert feed_in_chunks(Inflater(100), two, 3) == b"first second"
    assert Inflater(10).finish() == b""


def test_inflater_refuses_bad_and_truncated_gzip() -> None:
    with pytest.raises(BadBody, match="not valid gzip"):
        feed_in_chunks(Inflater(1000), b"plain text, not gzip")
    with pytest.raises(BadBody, match="truncated"):
        feed_in_chunks(Inflater(1000), gzip.compress(b"x" * 500)[:-10])
    with pytest.raises(BadBody, match="not valid gzip"):
        feed_in_chunks(Inflater(1000), gzip.compress(b"ok") + b"trailing garbage")
    # zlib's own container (what some clients call deflate) is not gzip.
    with pytest.raises(BadBody):
        feed_in_chunks(Inflater(1000), zlib.compress(b"x" * 100))


def test_a_gigabyte_bomb_stops_at_the_limit_without_inflating() -> None:
    packed = bomb(1024)  # 1 GiB of zeros in about 1 MB
    assert len(packed) < 2 * MIB
    inflater = Inflater(MIB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BodyTooLarge, match="once decompressed"):
            feed_in_chunks(inflater, packed)
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused within the first member: a millisecond's work, never the gigabyte.
    assert took < 0.5, took
    assert peak < 4 * MIB, peak


@pytest.mark.broker
async def test_publish_takes_gzip_and_refuses_other_encodings(settings: Settings) -> None:
    events = [event_body(f"gz-{i}", payload={"text": "compressible " * 50}) for i in range(50)]
    body = orjson.dumps(events)
    json_gzip = {"content-type": "application/json", "content-encoding": "gzip"}
    async with running_worker(settings), api_client(settings) as client:
        response = await client.post("/publish", content=gzip.compress(body), headers=json_gzip)
        assert (response.status_code, response.json()) == (202, {"accepted": 50})
        for encoding, status in (("br", 415), ("deflate", 415), ("gzip, gzip", 415)):
            response = await client.post(
                "/publish",
                content=gzip.compress(body),
                headers={"content-type": "application/json", "content-encoding": encoding},
            )
            assert response.status_code == status, (encoding, response.text)
        response = await client.post("/publish", content=body, headers=json_gzip)
        assert response.status_code == 400
        assert "gzip" in response.json()["detail"]
        stats = await eventually(
            lambda: client.get("/stats"), lambda r: r.json()["received"] >= 50, what="50 stored"
        )
        assert stats.json()["unique_processed"] == 50


@pytest.mark.broker
@pytest.mark.slow
async def test_a_gzip_bomb_gets_413_early_from_the_api_process(
    amqp_url: str, tmp_path: Path
) -> None:
    """A real API process: 1 GiB of zeros against a 1 MiB limit; answered at once, and the
    process's peak memory barely moves."""
    settings = make_settings(amqp_url, tmp_path, port=free_port(), max_body_bytes=MIB)
    packed = bomb(1024)
    try:
        with start_api(settings, tmp_path / "api.log") as api:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                await eventually(
                    lambda: client.get("/readyz"), lambda r: r.status_code == 200, what="ready"
                )
                before = peak_rss_mb(api.pid)
                headers = {"content-type": "application/json", "content-encoding": "gzip"}
                for path in ("/publish", "/v1/logs", "/ingest/app.log"):
                    media = "application/x-protobuf" if path == "/v1/logs" else "application/json"
                    started = time.monotonic()
                    response = await client.post(
                        path, content=packed, headers={**headers, "content-type": media}
                    )
                    took = time.monotonic() - started
                    assert response.status_code == 413, (path, response.text)
                    assert took < 2.0, (path, took)
                grown = peak_rss_mb(api.pid) - before
            assert grown < 40, f"peak RSS grew by {grown:.0f} MB"
            assert await queue_depth(settings, settings.queue) == 0
    finally:
        await delete_topology(settings)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")
