"""What the API refuses at the edge, on a real broker: bad bodies, bad events named by index and
field, what the store would change, an unroutable publish; nothing refused is published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from aggregator.settings import Settings
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, queue_depth
from tests.support.reading import all_events, wait_for_stats
from tests.support.running import api_client, running_worker

pytestmark = pytest.mark.broker


def _bad_requests() -> list[tuple[str, dict[str, str], bytes, int]]:
    good = event_body("good")
    json_ct = {"content-type": "application/json"}
    dump = orjson.dumps
    return [
        ("not json", json_ct, b"{not json", 400),
        ("truncated json", json_ct, dump(good)[:-3], 400),
        (
            "form content type",
            {"content-type": "application/x-www-form-urlencoded"},
            dump(good),
            415,
        ),
        ("text content type", {"content-type": "text/plain"}, dump(good), 415),
        ("no content type", {}, dump(good), 415),
        ("wrong type", json_ct, dump({**good, "payload": "text"}), 422),
        ("number timestamp", json_ct, dump({**good, "timestamp": 1764000000}), 422),
        ("naive timestamp", json_ct, dump({**good, "timestamp": "2026-11-24T10:00:00"}), 422),
        ("bad topic", json_ct, dump({**good, "topic": "no spaces"}), 422),
        ("missing field", json_ct, dump({k: v for k, v in good.items() if k != "source"}), 422),
        ("extra field", json_ct, dump({**good, "level": "info"}), 422),
        ("empty array", json_ct, b"[]", 422),
        ("empty envelope", json_ct, dump({"events": []}), 422),
        ("scalar", json_ct, b"42", 422),
        ("one bad in a batch", json_ct, dump([good, {**good, "event_id": ""}]), 422),
        ("over the batch limit", json_ct, dump([event_body(str(i)) for i in range(6)]), 413),
        ("over the body limit", json_ct, dump({**good, "payload": {"big": "x" * 5000}}), 413),
    ]


async def test_bad_input_is_refused_and_nothing_is_published(amqp_url: str, tmp_path: Path) -> None:
    settings = make_settings(amqp_url, tmp_path, max_batch=5, max_body_bytes=4096)
    try:
        async with api_client(settings) as client:
            for name, headers, content, status in _bad_requests():
                response = await client.post("/publish", content=content, headers=headers)
                assert response.status_code == status, (name, response.text)
                detail = response.json()["detail"]
                assert detail, name
                if status == 422:
                    assert all({"loc", "msg", "type"} <= set(d) for d in detail), name
            # Nothing of any refused request reached the queue; a good one does.
            assert await queue_depth(settings, settings.queue) == 0
            assert (await client.post("/publish", json=event_body("good"))).status_code == 202
            assert await queue_depth(settings, settings.queue) == 1
    finally:
        await delete_topology(settings)


async def test_422_names_index_and_field_of_each_bad_event(settings: Settings) -> None:
    batch = [
        event_body("0"),
        event_body("1", timestamp="2026-11-24"),
        event_body("2"),
        event_body("3", topic="bad topic", source=""),
    ]
    async with api_client(settings) as client:
        response = await client.post("/publish", json={"events": batch})
        assert response.status_code == 422
        locs = [d["loc"] for d in response.json()["detail"]]
        assert locs == [
            ["body", "events", 1, "timestamp"],
            ["body", "events", 3, "topic"],
            ["body", "events", 3, "source"],
        ]
        assert await queue_depth(settings, settings.queue) == 0


async def test_unroutable_publish_answers_503(settings: Settings) -> None:
    async with api_client(settings) as client:
        # Take the binding away under the running API: the broker returns the message.
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(settings.queue, passive=True)
            await queue.unbind(settings.exchange, routing_key="#")
        response = await client.post("/publish", json=event_body("lost"))
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        assert "unroutable" in response.json()["detail"]


async def test_what_the_store_would_change_is_refused_at_the_edge(settings: Settings) -> None:
    deep: dict[str, Any] = {}
    for _ in range(299):
        deep = {"a": deep}
    async with api_client(settings) as client:
        response = await client.post("/publish", json=event_body("deep", payload=deep))
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["type"] == "depth"

        big = orjson.dumps(event_body("big", payload={"n": 0})).replace(
            b'"n":0', b'"n":' + b"9" * 22
        )
        response = await client.post(
            "/publish", content=big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "payload", "n"]

        large = [event_body("small"), event_body("large", payload={"x": "y" * (2 * 1024 * 1024)})]
        response = await client.post("/publish", json=large)
        assert response.status_code == 413, response.text
        assert "event 1 is" in response.json()["detail"]
        assert await queue_depth(settings, settings.queue) == 0

        # 64 bits, signed or unsigned, go through exactly.
        edge = event_body("edge", payload={"max": 2**64 - 1, "min": -(2**63)})
        async with running_worker(settings):
            assert (await client.post("/publish", json=edge)).status_code == 202
            await wait_for_stats(client, received=1)
        [stored] = await all_events(client)
        assert stored["payload"] == {"max": 2**64 - 1, "min": -(2**63)}
