"""``POST /ingest/{topic}`` on the real broker and worker, with what Fluent Bit and Vector send.

The bodies and headers are those of Fluent Bit's http output (``plugins/out_http``: ``format
json_lines`` sends one record per line, each followed by a newline, as
``application/x-ndjson``, before 3.0.4 as ``application/json``; ``format json`` an array;
``compress gzip``; ``header X-API-Key ...``; ``User-Agent: Fluent-Bit``; the time in ``date`` as
a double) and of Vector's http sink (``encoding.codec = "json"`` with ``framing.method =
"newline_delimited"``: ``application/x-ndjson``, lines without a final newline; without the
framing, a JSON array as ``application/json``; ``compression = "gzip"``; events with
``timestamp``, ``host`` and ``message``).
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from aggregator.settings import Settings
from tests.conftest import make_settings
from tests.support.broker import delete_topology, queue_depth
from tests.support.reading import all_events, wait_for_stats
from tests.support.running import api_client, running_worker
from tests.test_auth import TOKENS, keys_toml

pytestmark = pytest.mark.broker


def fluent_bit_records(count: int, start: float = 1795514400.0) -> list[dict[str, object]]:
    return [
        {"date": start + i * 0.25, "log": f"GET /api/items/{i} 200", "stream": "stdout"}
        for i in range(count)
    ]


def json_lines(records: list[dict[str, object]]) -> bytes:
    """Fluent Bit's json_lines: every record followed by a newline."""
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def vector_events(count: int) -> list[dict[str, object]]:
    return [
        {
            "file": "/var/log/app.log",
            "host": "web-1",
            "message": f"user {i} signed in",
            "source_type": "file",
            "timestamp": f"2026-11-24T10:00:{i:02d}.123456789Z",
        }
        for i in range(count)
    ]


FLUENT_BIT_HEADERS = {"content-type": "application/x-ndjson", "user-agent": "Fluent-Bit"}
VECTOR_HEADERS = {"content-type": "application/x-ndjson", "user-agent": "Vector/0.49.0"}


async def test_fluent_bit_json_lines_gzip_and_a_retry_are_stored_once(settings: Settings) -> None:
    records = fluent_bit_records(40)
    body = gzip.compress(json_lines(records))
    headers = {**FLUENT_BIT_HEADERS, "content-encoding": "gzip"}
    async with running_worker(settings), api_client(settings) as client:
        response = await client.post("/ingest/nginx.access", content=body, headers=headers)
        assert (response.status_code, response.json()) == (202, {"accepted": 40})
        # Fluent Bit retries a chunk whose answer it did not get: the same bytes again.
        again = await client.post("/ingest/nginx.access", content=body, headers=headers)
        assert again.status_code == 202
        stats = await wait_for_stats(client, received=80)
        assert (stats["unique_processed"], stats["duplicate_dropped"]) == (40, 40)
        stored = await all_events(client, topic="nginx.access")
    assert [e["payload"] for e in stored] == records
    assert stored[1]["timestamp"] == "2026-11-24T10:00:00.250000Z"
    assert {e["source"] for e in stored} == {"ingest"}


async def test_fluent_bit_json_and_old_json_lines_as_application_json(settings: Settings) -> None:
    array = fluent_bit_records(5)
    old_style = fluent_bit_records(5, start=1795514500.0)
    json_headers = {"content-type": "application/json", "user-agent": "Fluent-Bit"}
    async with running_worker(settings), api_client(settings) as client:
        response = await client.post(
            "/ingest/app", content=orjson.dumps(array), headers=json_headers
        )
        assert response.json() == {"accepted": 5}
        response = await client.post(
            "/ingest/app", content=json_lines(old_style), headers=json_headers
        )
        assert response.json() == {"accepted": 5}
        await wait_for_stats(client, received=10)
        stored = await all_events(client)
    assert [e["payload"] for e in stored] == array + old_style


async def test_vector_ndjson_and_json_with_its_own_time_and_id_fields(settings: Settings) -> None:
    events = vector_events(6)
    lines = b"\n".join(orjson.dumps(event) for event in events)  # no final newline
    query = "?time_key=timestamp&source_key=host"
    async with running_worker(settings), api_client(settings) as client:
        response = await client.post(
            f"/ingest/web.auth{query}",
            content=gzip.compress(lines),
            headers={**VECTOR_HEADERS, "content-encoding": "gzip"},
        )
        assert (response.status_code, response.json()) == (202, {"accepted": 6})
        # The same events through Vector's default framing (an array), ids from a field.
        with_ids = [{**event, "id": f"v-{i}"} for i, event in enumerate(events)]
        response = await client.post(
            f"/ingest/web.auth{query}&id_key=id",
            content=orjson.dumps(with_ids),
            headers={**VECTOR_HEADERS, "content-type": "application/json"},
        )
        assert response.json() == {"accepted": 6}
        stats = await wait_for_stats(client, received=12)
        assert stats["unique_processed"] == 12  # other records (an id field): other events
        stored = await all_events(client, topic="web.auth")
    assert stored[0]["timestamp"] == "2026-11-24T10:00:00.123456789Z"
    assert stored[0]["source"] == "web-1"
    assert [e["event_id"] for e in stored[6:]] == [f"v-{i}" for i in range(6)]


async def test_a_bad_line_is_named_and_nothing_is_published(settings: Settings) -> None:
    records = fluent_bit_records(5)
    body = json_lines(records[:3]) + b"[1, 2]\n" + json_lines(records[3:])
    async with api_client(settings) as client:
        response = await client.post("/ingest/app", content=body, headers=FLUENT_BIT_HEADERS)
        assert response.status_code == 400
        assert response.json() == {"detail": "line 4: a record must be a JSON object, not array"}
        naive = json_lines([{"date": "2026-11-24 10:00:00.000000", "log": "x"}])
        response = await client.post("/ingest/app", content=naive, headers=FLUENT_BIT_HEADERS)
        assert response.status_code == 400 and "timezone" in response.json()["detail"]
        for path, status in (("/ingest/bad%20topic", 422), ("/ingest/app?time_key=", 422)):
            response = await client.post(
                path, content=json_lines(records), headers=FLUENT_BIT_HEADERS
            )
            assert response.status_code == status, path
        response = await client.post(
            "/ingest/app", content=json_lines(records), headers={"content-type": "text/plain"}
        )
        assert response.status_code == 415
        assert await queue_depth(settings, settings.queue) == 0


@pytest.fixture
async def keyed(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    keys = tmp_path / "keys.toml"
    keys.write_text(keys_toml())
    settings = make_settings(amqp_url, tmp_path, api_keys_file=keys)
    yield settings
    await delete_topology(settings)


async def test_a_shippers_key_is_checked_like_any_publisher(keyed: Settings) -> None:
    body = json_lines(fluent_bit_records(3))
    async with api_client(keyed) as client:
        response = await client.post(
            "/ingest/billing.app", content=body, headers=FLUENT_BIT_HEADERS
        )
        assert response.status_code == 401
        key = {"x-api-key": TOKENS["billing"]}  # Fluent Bit: `header X-API-Key <token>`
        response = await client.post(
            "/ingest/checkout", content=body, headers={**FLUENT_BIT_HEADERS, **key}
        )
        assert response.status_code == 403
        assert "may not publish to topic 'checkout'" in response.json()["detail"]
        assert await queue_depth(keyed, keyed.queue) == 0
        response = await client.post(
            "/ingest/billing.app", content=body, headers={**FLUENT_BIT_HEADERS, **key}
        )
        assert response.json() == {"accepted": 3}
        assert await queue_depth(keyed, keyed.queue) == 3
