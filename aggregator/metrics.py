"""Prometheus metrics: one registry per process, created in its entry point and passed in.

The API serves its registry on ``GET /metrics``; the worker serves its own on
``AGG_METRICS_PORT`` (it is a separate process). Queue depth and consumer count come from the
broker (a passive declare) on a timer, never per scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aio_pika
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aggregator.connection import BROKER_ERRORS, close_quietly, connect_once
from aggregator.errors import StoreError
from aggregator.settings import Settings
from aggregator.store import DedupStore, Stats
from aggregator.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

# Seconds: a confirm or a commit of a batch takes from a millisecond to the confirm timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class QueueGauges:
    """``agg_queue_messages`` and ``agg_queue_consumers`` for the main and dead-letter queues."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Gauge(
            "agg_queue_messages",
            "Messages ready in the queue, read from the broker",
            ["queue"],
            registry=registry,
        )
        self.consumers = Gauge(
            "agg_queue_consumers",
            "Consumers on the queue, read from the broker",
            ["queue"],
            registry=registry,
        )

    async def refresh_forever(self, settings: Settings, interval_s: float) -> None:
        """Read both queues every ``interval_s`` on a connection of its own, until cancelled.

        Broker errors are waited out; a cancel always ends it, also one that aiormq turned into
        a broker error while a channel was opening.
        """
        while True:
            raise_if_cancelling()
            try:
                connection = await connect_once(settings)
            except BROKER_ERRORS as exc:
                raise_if_cancelling()
                log.debug("queue gauges: broker not reachable: %r", exc)
                await asyncio.sleep(interval_s)
                continue
            try:
                async with connection:
                    while True:
                        await self.refresh(connection, settings)
                        # A close inside refresh() can take a cancel without raising it.
                        raise_if_cancelling()
                        await asyncio.sleep(interval_s)
            except BROKER_ERRORS as exc:
                raise_if_cancelling()
                log.debug("queue gauges: lost the broker: %r", exc)
                await asyncio.sleep(interval_s)

    async def refresh(
        self, connection: aio_pika.abc.AbstractConnection, settings: Settings
    ) -> None:
        for name in (settings.queue, settings.dead_letter_queue):
            # A channel per read: a passive declare of a missing queue closes its channel.
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            finally:
                await close_quietly(channel)
            result = declared.declaration_result
            self.messages.labels(name).set(result.message_count or 0)
            self.consumers.labels(name).set(result.consumer_count or 0)


class StoreGauges:
    """``agg_store_events`` and ``agg_store_bytes``: what the store holds now (as /stats says)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Gauge(
            "agg_store_events",
            "Events the store holds now (stored, less those deleted by retention)",
            registry=registry,
        )
        self.bytes = Gauge(
            "agg_store_bytes",
            "The store's size on disk: the SQLite file, or PostgreSQL's tables and indexes",
            registry=registry,
        )

    async def refresh_forever(
        self,
        store: DedupStore,
        interval_s: float,
        also: Callable[[Stats], None] | None = None,
    ) -> None:
        """Read the store every ``interval_s`` until cancelled, and hand each reading to
        ``also`` (the page's history) too: one reader, not one per use. A failing store keeps
        the last values (readiness and the 503s say it is down)."""
        while True:
            try:
                stats = await store.stats()
            except StoreError as exc:
                raise_if_cancelling()
                log.debug("store gauges: the store did not answer: %s", exc)
            else:
                self.events.set(stats.stored_events)
                self.bytes.set(stats.store_bytes)
                if also is not None:
                    also(stats)
            await asyncio.sleep(interval_s)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.published = Counter(
            "agg_api_events_published",
            "Events the API sent to the broker",
            registry=self.registry,
        )
        self.confirmed = Counter(
            "agg_api_events_confirmed",
            "Events the broker confirmed (answered 202)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "agg_api_requests_rejected",
            "POST /publish requests refused, by reason (invalid, not_json, too_large, "
            "unsupported_media_type, and for 503: not_connected, timeout, unroutable, broker)",
            ["reason"],
            registry=self.registry,
        )
        self.records_refused = Counter(
            "agg_api_log_records_refused",
            "OTLP log records refused alone (answered in partial_success; the rest published)",
            registry=self.registry,
        )
        self.confirm_seconds = Histogram(
            "agg_api_publish_confirm_seconds",
            "Time from a batch's first publish to the broker confirming all of it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queues = QueueGauges(self.registry)
        self.store = StoreGauges(self.registry)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

        def counter(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, registry=self.registry)

        self.consumed = counter("agg_worker_events_consumed", "Deliveries taken from the queue")
        self.stored = counter("agg_worker_events_stored", "Events stored for the first time")
        self.duplicates = counter(
            "agg_worker_duplicates_dropped", "Deliveries whose (topic, event_id) was stored"
        )
        self.dead_lettered = counter(
            "agg_worker_dead_lettered", "Poison messages copied to the dead-letter queue"
        )
        self.transient_retries = counter(
            "agg_worker_transient_retries", "Store attempts that failed and will be retried"
        )
        self.expired = counter(
            "agg_worker_events_expired",
            "Events deleted by retention (AGG_RETENTION); their keys stay seen",
        )
        self.requeued = counter(
            "agg_worker_requeued",
            "Deliveries given back to the queue unsettled (stopping while the store is down, or"
            " a dead-letter copy the broker did not confirm)",
        )
        self.store_up = Gauge(
            "agg_worker_store_up",
            "1 while the store takes writes, 0 while the worker holds deliveries for it",
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "agg_worker_store_commit_seconds",
            "Time to store one batch (one transaction)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queues = QueueGauges(self.registry)
