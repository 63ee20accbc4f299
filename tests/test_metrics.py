"""Each Prometheus counter moves when its event happens; gauges come from the broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.store import SqliteStore
from api.app import create_app
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, publish_raw
from tests.support.processes import free_port, start_worker
from tests.support.running import running_worker
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


def value(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    sample = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if sample is None else sample


async def test_worker_counters_follow_stored_duplicate_and_poison(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(amqp_url, tmp_path, metrics_interval_s=0.1)
    try:
        async with running_worker(settings) as consumer:
            metrics = consumer.metrics
            assert value(metrics, "agg_worker_events_consumed_total") == 0
            await publish_raw(
                settings,
                [
                    ("app.log", orjson.dumps(event_body("a"))),
                    ("app.log", orjson.dumps(event_body("b"))),
                    ("app.log", orjson.dumps(event_body("a"))),
                    ("app.log", b"poison"),
                ],
            )

            async def consumed() -> float:
                return value(metrics, "agg_worker_events_consumed_total")

            await eventually(consumed, lambda v: v >= 4, what="4 deliveries consumed")
            await eventually(
                lambda: _dead(metrics), lambda v: v >= 1, what="the poison dead-lettered"
            )
            assert value(metrics, "agg_worker_events_stored_total") == 2
            assert value(metrics, "agg_worker_duplicates_dropped_total") == 1
            assert value(metrics, "agg_worker_dead_lettered_total") == 1
            assert value(metrics, "agg_worker_store_commit_seconds_count") >= 1
            assert value(metrics, "agg_worker_transient_retries_total") == 0

            # The gauges are read from the broker on a timer: our consumer is on the queue.
            async def consumers() -> float:
                return value(metrics, "agg_queue_consumers", queue=settings.queue)

            await eventually(consumers, lambda v: v == 1, what="the consumer gauge")
            dead = await eventually(
                lambda: _gauge(metrics, settings.dead_letter_queue),
                lambda v: v == 1,
                what="the dead-letter queue depth gauge",
            )
            assert dead == 1
    finally:
        await delete_topology(settings)


async def _dead(metrics: WorkerMetrics) -> float:
    return value(metrics, "agg_worker_dead_lettered_total")


async def _gauge(metrics: WorkerMetrics, queue: str) -> float:
    return value(metrics, "agg_queue_messages", queue=queue)


async def test_a_store_outage_shows_in_store_up_and_retries(amqp_url: str, tmp_path: Path) -> None:
    settings = make_settings(amqp_url, tmp_path, sqlite_busy_timeout_ms=20, delivery_limit=1)
    store = await SqliteStore.open(settings.db_path)
    await store.close()
    blocker = sqlite3.connect(settings.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        async with running_worker(settings) as consumer:
            metrics = consumer.metrics
            assert value(metrics, "agg_worker_store_up") == 1
            await publish_raw(settings, [("app.log", orjson.dumps(event_body("x")))])

            async def retries() -> float:
                return value(metrics, "agg_worker_transient_retries_total")

            await eventually(retries, lambda v: v >= 3, what="retries of the locked store")
            assert value(metrics, "agg_worker_store_up") == 0
            # Held, not given back: nothing requeued, stored or dead-lettered.
            assert value(metrics, "agg_worker_requeued_total") == 0
            assert value(metrics, "agg_worker_events_stored_total") == 0
            blocker.execute("ROLLBACK")

            async def stored() -> float:
                return value(metrics, "agg_worker_events_stored_total")

            await eventually(stored, lambda v: v == 1, what="the event stored after the outage")
            assert value(metrics, "agg_worker_store_up") == 1
            assert value(metrics, "agg_worker_dead_lettered_total") == 0
    finally:
        blocker.close()
        await delete_topology(settings)


@pytest.mark.slow
async def test_the_worker_serves_its_metrics_port(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    worker_settings = settings.model_copy(update={"metrics_port": port, "host": "127.0.0.1"})
    with start_worker(worker_settings, tmp_path / "worker.log") as worker:
        async with httpx.AsyncClient(timeout=5) as client:

            async def scrape() -> str:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    return ""  # not listening yet: poll again

            await publish_raw(settings, [("app.log", orjson.dumps(event_body("m")))])
            text = await eventually(
                scrape,
                lambda t: "agg_worker_events_stored_total 1.0" in t,
                what="the stored counter on the worker's metrics port",
            )
            assert "agg_worker_store_commit_seconds_bucket" in text
        assert worker.popen.poll() is None, worker.log_text()


def api_value(client_app: FastAPI, name: str, **labels: str) -> float:
    registry = client_app.state.metrics.registry
    sample = registry.get_sample_value(name, labels or None)
    return 0.0 if sample is None else float(sample)


async def test_api_counters_follow_publishes_and_refusals(amqp_url: str, tmp_path: Path) -> None:
    settings = make_settings(amqp_url, tmp_path, max_batch=3, metrics_interval_s=0.1)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            await app.state.publisher.wait_connected()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                batch = [event_body("1"), event_body("2")]
                assert (await client.post("/publish", json=batch)).status_code == 202
                assert api_value(app, "agg_api_events_published_total") == 2
                assert api_value(app, "agg_api_events_confirmed_total") == 2
                assert api_value(app, "agg_api_publish_confirm_seconds_count") == 1

                refusals = [
                    ({"content-type": "text/plain"}, b"{}", "unsupported_media_type"),
                    ({"content-type": "application/json"}, b"{nope", "not_json"),
                    (
                        {"content-type": "application/json"},
                        orjson.dumps([event_body("x")] * 4),
                        "too_large",
                    ),
                    ({"content-type": "application/json"}, b"[]", "invalid"),
                ]
                for headers, content, reason in refusals:
                    before = api_value(app, "agg_api_requests_rejected_total", reason=reason)
                    await client.post("/publish", content=content, headers=headers)
                    after = api_value(app, "agg_api_requests_rejected_total", reason=reason)
                    assert after == before + 1, reason
                assert api_value(app, "agg_api_events_published_total") == 2  # none of those

                text = await eventually(
                    lambda: _scrape(client),
                    lambda t: f'agg_queue_messages{{queue="{settings.queue}"}} 2.0' in t,
                    what="the queue depth gauge read from the broker",
                )
                assert "agg_api_events_confirmed_total 2.0" in text
                assert f'agg_queue_consumers{{queue="{settings.queue}"}} 0.0' in text
    finally:
        await delete_topology(settings)


async def _scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_api_counts_503_by_reason(tmp_path: Path) -> None:
    unreachable = make_settings(f"amqp://guest:guest@127.0.0.1:{free_port()}/", tmp_path)
    app = create_app(unreachable)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.post("/publish", json=event_body("1"))
            assert response.status_code == 503
    assert api_value(app, "agg_api_requests_rejected_total", reason="not_connected") == 1
    assert api_value(app, "agg_api_events_confirmed_total") == 0
    # Never handed to the broker, so never counted as published.
    assert api_value(app, "agg_api_events_published_total") == 0
