"""Checking that each event was stored exactly once, for tests that run workers as processes."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from aggregator.settings import Settings
from aggregator.store import START, DedupStore, Stats, StoredEvent
from tests.support.broker import event_body, queue_depth
from tests.support.processes import Process

TOPICS = ("auth.login", "billing.invoice", "app-log_7", "svc.a.errors", "metrics", "audit.trail")

Key = tuple[str, str]


def make_events(count: int, prefix: str) -> list[dict[str, object]]:
    """``count`` distinct events spread over :data:`TOPICS`, each with its own payload."""
    return [
        event_body(
            f"{prefix}-{i}",
            TOPICS[i % len(TOPICS)],
            source=f"svc-{i % 3}",
            payload={"n": i, "text": f"line {i}"},
        )
        for i in range(count)
    ]


def key_of(event: dict[str, object]) -> Key:
    return (str(event["topic"]), str(event["event_id"]))


def wire(events: list[dict[str, object]]) -> list[tuple[str, bytes]]:
    """``(routing key, body)`` per event, as the contract's wire format has them."""
    return [(str(event["topic"]), orjson.dumps(event)) for event in events]


async def stored_events(store: DedupStore) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    after = START
    while True:
        page, more = await store.events_after(after=after, limit=1000)
        events += page
        if not more:
            return events
        after = page[-1].position


async def wait_for_exit(process: Process, timeout: float) -> int:
    """The exit code, without blocking the event loop; fails with the log after ``timeout``."""
    return await asyncio.to_thread(process.wait, timeout)


async def assert_stored_exactly_once(
    store: DedupStore,
    settings: Settings,
    expected: list[dict[str, object]],
    *,
    dead_lettered: int = 0,
) -> Stats:
    """Every expected event stored once, as published; nothing else; counters consistent.

    ``dead_lettered``: the poison published beside them, each dead-lettered once.
    """
    events = await stored_events(store)
    counts = Counter((e.topic, e.event_id) for e in events)
    twice = {key: n for key, n in counts.items() if n > 1}
    assert not twice, f"stored more than once: {sorted(twice)[:10]}"
    by_key = {key_of(event): event for event in expected}
    missing = set(by_key) - set(counts)
    extra = set(counts) - set(by_key)
    assert not missing, f"{len(missing)} events never stored, e.g. {sorted(missing)[:10]}"
    assert not extra, f"{len(extra)} unexpected events stored, e.g. {sorted(extra)[:10]}"
    for stored in events:
        sent = by_key[(stored.topic, stored.event_id)]
        as_stored = {
            "topic": stored.topic,
            "event_id": stored.event_id,
            "timestamp": stored.timestamp,
            "source": stored.source,
            "payload": stored.payload,
        }
        assert as_stored == sent

    stats = await store.stats()
    assert stats.received == stats.unique_processed + stats.duplicate_dropped, stats
    assert stats.unique_processed == len(by_key), stats
    assert stats.dead_lettered == dead_lettered, stats
    assert stats.topics == dict(Counter(topic for topic, _ in by_key)), stats
    assert await queue_depth(settings, settings.queue) == 0
    assert await queue_depth(settings, settings.dead_letter_queue) == dead_lettered
    return stats
