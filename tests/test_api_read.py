"""Reading over HTTP, on each store: filters, newest first, search, one event, the NDJSON export,
unknown parameters refused, and what /stats says about the store.

The events are written straight into the store (the worker's part is tested elsewhere); the
API runs in the test's loop against the real broker, reading the same store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from aggregator.settings import Settings
from aggregator.store import DedupStore
from aggregator.timestamps import utc_micros
from api.app import create_app
from tests.conftest import make_settings
from tests.support.broker import delete_topology
from tests.support.reading import all_events
from tests.support.running import api_client
from tests.support.stores import StoreFactory, make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture
async def client(
    amqp_url: str, tmp_path: Path, stores: StoreFactory
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(amqp_url, tmp_path, store_url=stores.url)
    try:
        async with api_client(settings) as client:
            yield client
    finally:
        await delete_topology(settings)


@pytest.fixture
async def store(stores: StoreFactory) -> DedupStore:
    return await stores.open()


async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    return [e["event_id"] for e in await all_events(client, **params)]


async def test_filters_order_and_search(client: httpx.AsyncClient, store: DedupStore) -> None:
    await store.store_events(
        [
            make_event("a1", "auth", source="svc-a", timestamp="2026-11-24T09:00:00+01:00"),
            make_event("a2", "auth", source="svc-b", timestamp="2026-11-24T08:30:00Z"),
            make_event("o1", "orders", source="svc-a", payload={"msg": "payment failed"}),
            make_event("o2", "orders", source="svc-b", timestamp="2026-11-24T05:00:00-05:00"),
        ]
    )
    assert await ids(client, limit=1) == ["a1", "a2", "o1", "o2"]
    assert await ids(client, order="desc", limit=3) == ["o2", "o1", "a2", "a1"]
    assert await ids(client, topic="auth", order="desc") == ["a2", "a1"]
    assert await ids(client, source="svc-b") == ["a2", "o2"]
    # In UTC: a1 08:00, a2 08:30, o1 10:00, o2 10:00; httpx writes the + as %2B.
    assert await ids(client, since="2026-11-24T09:15:00+01:00", until="2026-11-24T09:45Z") == ["a2"]
    assert await ids(client, since="2026-11-24T10:00:00Z") == ["o1", "o2"]
    assert await ids(client, q="payment failed") == ["o1"]
    assert await ids(client, q="payment -failed") == []
    assert await ids(client, topic="orders", source="svc-a", q="failed", order="desc") == ["o1"]
    # A + left unencoded arrives as a space; it can only have been a plus.
    raw = await client.get("/events?since=2026-11-24T09:15:00+01:00")
    assert [e["event_id"] for e in raw.json()["events"]] == ["a2", "o1", "o2"]


async def test_what_the_query_cannot_be_is_a_422_naming_each_parameter(
    client: httpx.AsyncClient,
) -> None:
    bad = {
        "since": "2026-11-24T10:00:00",  # no timezone
        "until": "yesterday",
        "q": "-debug",
        "after": "!!",
    }
    response = await client.get("/events", params=bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [d["loc"] for d in detail] == [["query", p] for p in ("since", "until", "q", "after")]
    assert all({"msg", "type"} <= set(d) for d in detail)
    for params in (
        {"since": "2026-11-25T00:00:00Z", "until": "2026-11-24T00:00:00Z"},
        {"order": "newest"},
        {"q": ""},
        {"q": "!!!"},
        {"topic": ""},
        {"topic": "a\x00b"},
        {"source": "\x00"},
        {"q": "a\x00b"},
    ):
        response = await client.get("/events", params=params)
        assert response.status_code == 422, params


# The pages left out of the OpenAPI document.
PAGES = ("/", "/docs", "/redoc")


def get_paths(settings: Settings) -> list[str]:
    """Every GET route the app documents, path parameters filled in, and its pages."""
    document = create_app(settings).openapi()
    documented = [path for path, methods in document["paths"].items() if "get" in methods]
    return [re.sub(r"\{[^}]+\}", "x-1", path) for path in documented] + list(PAGES)


async def test_unknown_query_parameters_are_refused_on_every_get_route(
    client: httpx.AsyncClient, amqp_url: str, tmp_path: Path
) -> None:
    # The app's own list, so a GET route added without the check fails here.
    paths = get_paths(make_settings(amqp_url, tmp_path))
    assert {"/events", "/events/x-1/x-1", "/stats", "/stats/history", "/dead-letters"} <= set(paths)
    for path in paths:
        response = await client.get(path, params={"sinse": "2026-11-24", "x": "1"})
        assert response.status_code == 422, (path, response.text)
        detail = response.json()["detail"]
        assert [d["loc"] for d in detail] == [["query", "sinse"], ["query", "x"]], path
        assert detail[0]["type"] == "extra_forbidden"
    response = await client.get("/events", params={"since": "2026-11-24T00:00:00Z"})
    assert response.status_code == 200


async def test_one_event_by_topic_and_id(client: httpx.AsyncClient, store: DedupStore) -> None:
    event = make_event("order/42 ü", "orders", payload={"total": 12.5}).published_by("shop")
    await store.store_events([event])
    response = await client.get("/events/orders/order%2F42%20%C3%BC")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("topic", "event_id", "payload", "publisher")} == {
        "topic": "orders",
        "event_id": "order/42 ü",
        "payload": {"total": 12.5},
        "publisher": "shop",
    }
    assert body["timestamp"] == event.timestamp and body["processed_at"].endswith("Z")
    missing = await client.get("/events/orders/order-43")
    assert missing.status_code == 404
    assert "order-43" in missing.json()["detail"]
    assert (await client.get("/events/orders/order%00")).status_code == 404


async def test_the_ndjson_export_streams_every_matching_event(
    client: httpx.AsyncClient, store: DedupStore
) -> None:
    for start in range(0, 2500, 500):
        await store.store_events(
            [
                make_event(f"e{n:04}", "even" if n % 2 == 0 else "odd")
                for n in range(start, start + 500)
            ]
        )
    async with client.stream("GET", "/events", headers=NDJSON) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [line async for line in response.aiter_lines() if line]
    assert [orjson.loads(line)["event_id"] for line in lines] == [f"e{n:04}" for n in range(2500)]
    first = orjson.loads(lines[0])
    assert set(first) == {
        "topic",
        "event_id",
        "timestamp",
        "source",
        "payload",
        "processed_at",
        "publisher",
    }

    odd_desc = await client.get("/events", params={"topic": "odd", "order": "desc"}, headers=NDJSON)
    odd_ids = [orjson.loads(line)["event_id"] for line in odd_desc.text.splitlines()]
    assert odd_ids == [f"e{n:04}" for n in reversed(range(1, 2500, 2))]
    # limit is a page's size; an export is every event (from the cursor, when there is one).
    page = (await client.get("/events", params={"limit": 1000})).json()
    rest = await client.get("/events", params={"after": page["next"], "limit": 5}, headers=NDJSON)
    assert len(rest.text.splitlines()) == 1500
    nothing = await client.get("/events", params={"topic": "none"}, headers=NDJSON)
    assert (nothing.status_code, nothing.text) == (200, "")
    # JSON stays the default, also for clients that take anything.
    for accept in ("*/*", "application/json", "application/json, application/x-ndjson;q=0.5"):
        response = await client.get("/events", params={"limit": 1}, headers={"Accept": accept})
        assert response.headers["content-type"] == "application/json", accept


async def test_stats_say_what_the_store_holds(client: httpx.AsyncClient, store: DedupStore) -> None:
    await store.store_events([make_event("old", timestamp="2020-01-01T00:00:00Z"), make_event("n")])
    await store.delete_expired(before_us=utc_micros("2021-01-01T00:00:00Z"), limit=10)
    stats = (await client.get("/stats")).json()
    assert (stats["unique_processed"], stats["expired"], stats["stored_events"]) == (2, 1, 1)
    assert stats["store_bytes"] > 0
    assert stats["topics"] == {"app.log": 2}


async def test_reading_takes_the_read_scope(
    amqp_url: str, tmp_path: Path, stores: StoreFactory
) -> None:
    keys = tmp_path / "keys.toml"
    lines = []
    for name, scope in (("writer", "publish"), ("reader", "read")):
        digest = hashlib.sha256(f"{name}-token".encode()).hexdigest()
        lines += ["[[key]]", f'name = "{name}"', f'sha256 = "{digest}"', f'scopes = ["{scope}"]']
    keys.write_text("\n".join(lines) + "\n")
    settings = make_settings(amqp_url, tmp_path, store_url=stores.url, api_keys_file=keys)
    await (await stores.open()).store_events([make_event("e")])
    try:
        async with api_client(settings) as client:
            for path, headers in (("/events/app.log/e", {}), ("/events", NDJSON)):
                assert (await client.get(path, headers=headers)).status_code == 401
                writer = {**headers, "Authorization": "Bearer writer-token"}
                assert (await client.get(path, headers=writer)).status_code == 403
                reader = {**headers, "Authorization": "Bearer reader-token"}
                assert (await client.get(path, headers=reader)).status_code == 200
    finally:
        await delete_topology(settings)


async def test_the_store_gauges_and_history_follow_the_store(
    amqp_url: str, tmp_path: Path, stores: StoreFactory
) -> None:
    settings = make_settings(amqp_url, tmp_path, store_url=stores.url, metrics_interval_s=0.1)
    store = await stores.open()
    await store.store_events([make_event(f"e{n}") for n in range(3)])

    def gauge(text: str, name: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(f"{name} ")]
        return float(lines[0].split()[1]) if lines else -1.0

    try:
        async with api_client(settings) as api:

            async def scrape() -> str:
                return (await api.get("/metrics")).text

            text = await eventually(
                scrape, lambda t: gauge(t, "agg_store_events") == 3, what="agg_store_events 3"
            )
            assert gauge(text, "agg_store_bytes") > 0
            await store.delete_expired(before_us=utc_micros("2027-01-01T00:00:00Z"), limit=2)
            await eventually(
                scrape, lambda t: gauge(t, "agg_store_events") == 1, what="agg_store_events 1"
            )
            # The same readings, kept for the page's rate chart: the counters, oldest first.
            await store.store_events([make_event(f"f{n}") for n in range(2)])
            answer = await eventually(
                lambda: api.get("/stats/history"),
                lambda r: r.json()["samples"][-1]["received"] == 5,
                what="a sample after the second write",
            )
            samples = answer.json()["samples"]
            assert samples[0]["received"] == 3
            assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
            assert [s["received"] for s in samples] == sorted(s["received"] for s in samples)
    finally:
        await delete_topology(settings)
