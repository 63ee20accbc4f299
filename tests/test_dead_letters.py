"""The dead-letter queue over HTTP: a look that takes nothing, a replay that moves each once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from aggregator.settings import Settings
from aggregator.store import open_store
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, publish_raw, queue_depth
from tests.support.running import api_client, running_worker
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def dead(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/dead-letters", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_look_at_dead_letters_then_replay_them_after_a_fix(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(amqp_url, tmp_path, max_event_bytes=2048)
    big = orjson.dumps(event_body("too-big", payload={"blob": "x" * 3000}))
    try:
        async with running_worker(settings), api_client(settings) as client:
            await publish_raw(settings, [("app.log", b"not json"), ("billing.x", big)])
            listed = await eventually(
                lambda: dead(client), lambda d: d["count"] == 2, what="two dead letters"
            )
            by_key = {d["routing_key"]: d for d in listed["dead_letters"]}
            assert set(by_key) == {"app.log", "billing.x"}
            assert "not valid JSON" in by_key["app.log"]["reason"]
            assert "AGG_MAX_EVENT_BYTES" in by_key["billing.x"]["reason"]
            assert by_key["app.log"]["body"] == "not json"
            # Looking takes nothing, however often.
            for _ in range(3):
                assert (await dead(client, limit=1))["count"] == 2
            assert await queue_depth(settings, settings.dead_letter_queue) == 2

        # The fix: a worker that takes larger events. The replay moves each dead letter once.
        fixed = settings.model_copy(update={"max_event_bytes": 1024 * 1024})
        async with running_worker(fixed), api_client(fixed) as client:
            response = await client.post("/dead-letters/replay")
            assert response.status_code == 200, response.text
            assert response.json()["replayed"] == 2
            store = await open_store(fixed)
            try:
                await eventually(
                    store.stats, lambda s: s.unique_processed == 1, what="the big one stored"
                )
            finally:
                await store.close()
            # The one that is still poison is dead-lettered again, once.
            await eventually(lambda: dead(client), lambda d: d["count"] == 1, what="one left")
            [left] = (await dead(client))["dead_letters"]
            assert left["routing_key"] == "app.log"
    finally:
        await delete_topology(settings)


async def test_replay_needs_the_admin_scope(settings: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        f'[[key]]\nname = "ops"\nsha256 = "{hashlib.sha256(b"r").hexdigest()}"\nscopes = ["read"]\n'
    )
    keyed = settings.model_copy(update={"api_keys_file": keys})
    async with api_client(keyed) as client:
        headers = {"X-API-Key": "r"}
        assert (await client.get("/dead-letters", headers=headers)).status_code == 200
        response = await client.post("/dead-letters/replay", headers=headers)
        assert response.status_code == 403 and "'admin'" in response.json()["detail"]
        assert (await client.post("/dead-letters/replay")).status_code == 401
