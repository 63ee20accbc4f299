"""``POST /v1/logs`` on the real broker and worker: OTLP in, events out once, answers per spec."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from aggregator.settings import Settings
from api.app import create_app
from tests.conftest import make_settings
from tests.support.broker import delete_topology, queue_depth
from tests.support.otlp import TRACE_ID, as_json, record, request
from tests.support.processes import free_port
from tests.support.reading import all_events, wait_for_stats
from tests.support.running import api_client, running_worker
from tests.test_auth import TOKENS, bearer, keys_toml

pytestmark = pytest.mark.broker

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/logs", content=body, headers=headers)


def status_of(response: httpx.Response) -> Status:
    assert response.headers["content-type"] == "application/x-protobuf"
    return Status.FromString(response.content)


async def test_records_are_stored_once_however_often_they_are_sent(settings: Settings) -> None:
    batch = request(
        record("card declined", attributes={"order.id": 1042}),
        record("retrying payment", severity=("WARN", 13)),
        record(time_ns=0, observed_ns=0, body="no time of its own"),
        resource={"service.name": "checkout", "service.instance.id": "pod-7"},
    )
    async with running_worker(settings), api_client(settings) as client:
        first = await post(client, batch.SerializeToString(), PROTOBUF)
        assert (first.status_code, first.content) == (200, b"")
        assert first.headers["content-type"] == "application/x-protobuf"
        # The exporter sends it again (a lost answer), gzip this time, then as OTLP/JSON.
        again = await post(
            client,
            gzip.compress(batch.SerializeToString()),
            {**PROTOBUF, "content-encoding": "gzip"},
        )
        assert (again.status_code, again.content) == (200, b"")
        as_json_too = await post(client, as_json(batch), JSON)
        assert (as_json_too.status_code, as_json_too.json()) == (200, {})
        stats = await wait_for_stats(client, received=9)
        assert (stats["unique_processed"], stats["duplicate_dropped"]) == (3, 6)
        assert stats["topics"] == {"checkout": 3}
        stored = await all_events(client, topic="checkout")
    assert [e["payload"]["body"] for e in stored] == [
        "card declined",
        "retrying payment",
        "no time of its own",
    ]
    first_event = stored[0]
    assert first_event["source"] == "checkout/pod-7"
    assert first_event["timestamp"] == "2026-11-24T10:00:00.123456789Z"
    assert first_event["payload"]["trace_id"] == TRACE_ID.hex()
    assert first_event["payload"]["attributes"] == {"order.id": 1042}
    assert stored[2]["timestamp"].endswith("Z") and stored[2]["timestamp"] >= "2026"


async def test_a_record_that_cannot_be_an_event_is_refused_alone(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(amqp_url, tmp_path, max_event_bytes=2048)
    batch = request(record("fits"), record("x" * 4000), record("fits too"))
    try:
        async with running_worker(settings), api_client(settings) as client:
            response = await post(client, batch.SerializeToString(), PROTOBUF)
            assert response.status_code == 200
            answer = ExportLogsServiceResponse.FromString(response.content)
            assert answer.partial_success.rejected_log_records == 1
            assert "log record 2" in answer.partial_success.error_message
            response = await post(client, as_json(batch), JSON)
            partial = response.json()["partialSuccess"]
            assert partial["rejectedLogRecords"] == "1"
            await wait_for_stats(client, received=4)
            stored = await all_events(client)
            assert [e["payload"]["body"] for e in stored] == ["fits", "fits too"]
            metrics = (await client.get("/metrics")).text
            assert "agg_api_log_records_refused_total 2.0" in metrics
    finally:
        await delete_topology(settings)


async def test_failures_are_status_messages_in_the_requests_encoding(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(amqp_url, tmp_path, max_batch=3, max_body_bytes=4096)
    four = request(*(record(str(i)) for i in range(4)))
    try:
        async with api_client(settings) as client:
            bad = await post(client, b"\xff\xff not protobuf", PROTOBUF)
            assert bad.status_code == 400
            assert status_of(bad).code == 3 and "ExportLogsServiceRequest" in status_of(bad).message
            bad_json = await post(client, b"{not json", JSON)
            assert bad_json.status_code == 400
            assert bad_json.headers["content-type"] == "application/json"
            assert set(bad_json.json()) == {"code", "message"}
            too_many = await post(client, four.SerializeToString(), PROTOBUF)
            assert too_many.status_code == 413 and "limit is 3" in status_of(too_many).message
            too_big = await post(client, b"\x00" * 5000, PROTOBUF)
            assert too_big.status_code == 413
            media = await post(client, b"{}", {"content-type": "text/plain"})
            assert media.status_code == 415 and media.json()["code"] == 3
            encoding = await post(client, b"", {**PROTOBUF, "content-encoding": "br"})
            assert encoding.status_code == 415
            empty = await post(client, b"", PROTOBUF)  # no records: a success, nothing published
            assert (empty.status_code, empty.content) == (200, b"")
            assert await queue_depth(settings, settings.queue) == 0
    finally:
        await delete_topology(settings)


@pytest.fixture
async def keyed(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    keys = tmp_path / "keys.toml"
    keys.write_text(keys_toml())
    settings = make_settings(amqp_url, tmp_path, api_keys_file=keys, rate_limit=5)
    yield settings
    await delete_topology(settings)


async def test_keys_topics_and_rate_limits_apply(keyed: Settings) -> None:
    body = request(record(), resource={"service.name": "billing.api"}).SerializeToString()
    elsewhere = request(record(), resource={"service.name": "checkout"}).SerializeToString()
    async with api_client(keyed) as client:
        missing = await post(client, body, PROTOBUF)
        assert missing.status_code == 401 and status_of(missing).code == 16
        assert missing.headers["www-authenticate"].startswith("Bearer")
        reader = await post(client, body, {**PROTOBUF, **bearer("reader")})
        assert reader.status_code == 403 and "scope" in status_of(reader).message
        outside = await post(client, elsewhere, {**PROTOBUF, "x-api-key": TOKENS["billing"]})
        assert outside.status_code == 403
        assert "may not publish to topic 'checkout'" in status_of(outside).message
        assert await queue_depth(keyed, keyed.queue) == 0
        many = request(*(record(str(i)) for i in range(4)), resource={"service.name": "billing"})
        answers = [
            await post(client, many.SerializeToString(), {**PROTOBUF, **bearer("billing")})
            for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [200, 429]
        assert answers[1].headers["retry-after"].isdigit()
        assert status_of(answers[1]).code == 8
        assert await queue_depth(keyed, keyed.queue) == 4


async def test_without_a_broker_the_answer_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/", db_path=tmp_path / "a.db"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            response = await post(client, as_json(request(record())), JSON)
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    answer: dict[str, Any] = orjson.loads(response.content)
    assert answer["code"] == 14 and "broker" in answer["message"]
