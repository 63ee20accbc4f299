"""The API and the worker together on a real broker: publish, dedup, paging, stats, restarts,
poison, PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest

from aggregator.settings import Settings
from tests.conftest import make_settings
from tests.support.broker import (
    delete_topology,
    event_body,
    get_dead_letters,
    publish_raw,
    queue_depth,
)
from tests.support.reading import all_events, stats_of, wait_for_stats
from tests.support.running import api_client, running_worker
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def test_single_event_is_confirmed_and_stored(settings: Settings) -> None:
    async with running_worker(settings), api_client(settings) as client:
        event = event_body("e-1", "auth.login", payload={"user": "alice"})
        response = await client.post("/publish", json=event)
        assert response.status_code == 202
        assert response.json() == {"accepted": 1}

        stats = await wait_for_stats(client, received=1)
        assert stats["unique_processed"] == 1
        assert stats["duplicate_dropped"] == 0
        assert stats["topics"] == {"auth.login": 1}
        assert stats["uptime_s"] >= 0

        [stored] = await all_events(client)
        assert {k: stored[k] for k in event} == event
        assert stored["processed_at"].endswith("Z")


async def test_batches_as_array_and_envelope(settings: Settings) -> None:
    array = [event_body(f"a-{i}", f"topic.{i % 4}") for i in range(300)]
    envelope = {"events": [event_body(f"b-{i}", "env") for i in range(200)]}
    async with running_worker(settings), api_client(settings) as client:
        first = await client.post("/publish", json=array)
        second = await client.post("/publish", json=envelope)
        assert (first.status_code, first.json()) == (202, {"accepted": 300})
        assert (second.status_code, second.json()) == (202, {"accepted": 200})
        stats = await wait_for_stats(client, received=500)
        assert stats["unique_processed"] == 500
        assert stats["topics"] == {
            "env": 200,
            "topic.0": 75,
            "topic.1": 75,
            "topic.2": 75,
            "topic.3": 75,
        }
        stored = await all_events(client, limit=77)
        assert len(stored) == 500
        assert len({(e["topic"], e["event_id"]) for e in stored}) == 500


async def test_same_event_over_http_and_amqp_is_stored_once(settings: Settings) -> None:
    http_first = event_body("shared-1", "orders.created", payload={"via": "http"})
    amqp_first = event_body("shared-2", "orders.created", payload={"via": "amqp"})
    async with running_worker(settings), api_client(settings) as client:
        assert (await client.post("/publish", json=http_first)).status_code == 202
        await wait_for_stats(client, received=1)
        await publish_raw(
            settings, [("orders.created", orjson.dumps({**http_first, "payload": {"via": "amqp"}}))]
        )
        await wait_for_stats(client, received=2)

        await publish_raw(settings, [("orders.created", orjson.dumps(amqp_first))])
        await wait_for_stats(client, received=3)
        assert (
            await client.post("/publish", json={**amqp_first, "payload": {}})
        ).status_code == 202
        stats = await wait_for_stats(client, received=4)

        assert stats["unique_processed"] == 2
        assert stats["duplicate_dropped"] == 2
        stored = {e["event_id"]: e["payload"] for e in await all_events(client)}
        assert stored == {"shared-1": {"via": "http"}, "shared-2": {"via": "amqp"}}


async def test_same_event_id_in_two_topics_is_two_events(settings: Settings) -> None:
    async with running_worker(settings), api_client(settings) as client:
        batch = [event_body("same", "topic.a"), event_body("same", "topic.b")]
        assert (await client.post("/publish", json=batch)).status_code == 202
        stats = await wait_for_stats(client, received=2)
        assert stats["unique_processed"] == 2
        assert stats["topics"] == {"topic.a": 1, "topic.b": 1}
        only_b = await all_events(client, topic="topic.b")
        assert [(e["topic"], e["event_id"]) for e in only_b] == [("topic.b", "same")]


async def test_events_paging_rules(settings: Settings) -> None:
    async with running_worker(settings), api_client(settings) as client:
        batch = [event_body(f"{i:03}", "odd" if i % 2 else "even") for i in range(25)]
        assert (await client.post("/publish", json=batch)).status_code == 202
        await wait_for_stats(client, received=25)

        page = (await client.get("/events", params={"limit": 10})).json()
        assert [e["event_id"] for e in page["events"]] == [f"{i:03}" for i in range(10)]
        assert page["next"] is not None
        # A cursor of the form issued before positions had two parts still pages on.
        legacy = (await client.get("/events", params={"after": cursor_of("seq:10")})).json()
        assert [e["event_id"] for e in legacy["events"]] == [f"{i:03}" for i in range(10, 25)]
        everything = await all_events(client, limit=5)
        assert [e["event_id"] for e in everything] == [f"{i:03}" for i in range(25)]
        exact = (await client.get("/events", params={"limit": 25})).json()
        assert len(exact["events"]) == 25 and exact["next"] is None
        odd = await all_events(client, topic="odd", limit=3)
        assert [e["event_id"] for e in odd] == [f"{i:03}" for i in range(1, 25, 2)]

        for bad in (
            {"limit": 0},
            {"limit": 1001},
            {"limit": "x"},
            {"after": "!!"},
            {"after": "bm9wZQ"},
            {"after": ""},
            {"after": cursor_of("seq:" + "9" * 5000)},
            {"after": cursor_of("seq:" + "9" * 19)},
            {"after": cursor_of("seq:-1")},
            {"after": cursor_of("seq:²")},
            {"after": cursor_of("pos:1")},
            {"after": cursor_of("pos:0:1:2")},
            {"after": cursor_of(f"pos:{2**63}:0")},
            {"after": "4pyTIMOgIGxhIG1vZGU"},  # base64 of text that is not a cursor
        ):
            response = await client.get("/events", params=bad)
            assert response.status_code == 422, bad
        assert (await client.get("/events", params={"limit": 1000})).status_code == 200


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_counters_survive_an_api_restart(settings: Settings) -> None:
    async with running_worker(settings), api_client(settings) as client:
        batch = [event_body("x"), event_body("x"), event_body("y")]
        assert (await client.post("/publish", json=batch)).status_code == 202
        before = await wait_for_stats(client, received=3)
    async with api_client(settings) as client:
        after = await stats_of(client)
    assert {k: v for k, v in after.items() if k != "uptime_s"} == {
        k: v for k, v in before.items() if k != "uptime_s"
    }
    assert (after["received"], after["unique_processed"], after["duplicate_dropped"]) == (3, 2, 1)


async def test_the_api_and_the_worker_on_postgresql(
    amqp_url: str, tmp_path: Path, pg_url: str
) -> None:
    settings = make_settings(amqp_url, tmp_path, store_url=pg_url)
    try:
        async with running_worker(settings), api_client(settings) as client:
            batch = [event_body(f"{i:03}", "odd" if i % 2 else "even") for i in range(25)]
            assert (await client.post("/publish", json=batch + batch[:5])).status_code == 202
            stats = await wait_for_stats(client, received=30)
            assert (stats["unique_processed"], stats["duplicate_dropped"]) == (25, 5)
            assert stats["topics"] == {"even": 13, "odd": 12}
            everything = await eventually(
                lambda: all_events(client, limit=4),
                lambda events: len(events) == 25,
                what="every event in /events",
            )
            assert [e["event_id"] for e in everything] == [f"{i:03}" for i in range(25)]
            odd = await all_events(client, topic="odd", limit=5)
            assert [e["event_id"] for e in odd] == [f"{i:03}" for i in range(1, 25, 2)]
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"broker": "ok", "store": "ok"})
    finally:
        await delete_topology(settings)
    assert not (tmp_path / "aggregator.db").exists()  # nothing went to SQLite


async def test_health_and_readiness(settings: Settings) -> None:
    async with api_client(settings) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"broker": "ok", "store": "ok"})


async def test_poison_over_amqp_is_dead_lettered_and_the_rest_processed(settings: Settings) -> None:
    valid = [event_body(f"v-{i}") for i in range(4)]
    messages = [
        ("app.log", orjson.dumps(valid[0])),
        ("app.log", b"\x00 not json at all"),
        ("app.log", orjson.dumps(valid[1])),
        ("app.log", orjson.dumps({**valid[2], "event_id": "p-1", "timestamp": 12})),
        ("app.log", orjson.dumps(valid[2])),
        ("app.log", b"[1, 2, 3]"),
        ("app.log", orjson.dumps(valid[3])),
    ]
    async with running_worker(settings), api_client(settings) as client:
        await publish_raw(settings, messages)
        stats = await eventually(
            lambda: stats_of(client),
            lambda s: s["received"] >= 4 and s["dead_lettered"] >= 3,
            what="4 stored and 3 dead-lettered",
        )
        assert (stats["unique_processed"], stats["dead_lettered"]) == (4, 3)
        assert stats["received"] == stats["unique_processed"] + stats["duplicate_dropped"]

        dead = await get_dead_letters(settings, expected=3)
        assert sorted(m.body for m in dead) == sorted(
            [messages[1][1], messages[3][1], messages[5][1]]
        )
        for message in dead:
            reason = message.headers["x-error"]
            assert isinstance(reason, str) and reason and "\n" not in reason
            assert message.headers["x-original-routing-key"] == "app.log"
        assert await queue_depth(settings, settings.queue) == 0

        # The worker keeps going after poison.
        assert (await client.post("/publish", json=event_body("after"))).status_code == 202
        await wait_for_stats(client, received=5)


async def test_concurrent_reads_do_not_collide(settings: Settings) -> None:
    async with api_client(settings) as client:
        responses = await asyncio.gather(
            *(client.get("/stats") for _ in range(20)), *(client.get("/events") for _ in range(20))
        )
        assert [r.status_code for r in responses] == [200] * 40
