"""Finding events in the store, on each backend: filters, newest first, time, full text, by key.

Every test takes ``store`` and so runs on SQLite and on PostgreSQL; paging newest first beside
concurrent writers is in tests/test_store_postgres_paging.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from aggregator.store import DedupStore, EventQuery, Position, StoredEvent
from aggregator.store.search import SearchSyntaxError
from aggregator.timestamps import utc_micros
from tests.support.stores import make_event


async def read_all(
    store: DedupStore, query: EventQuery, limit: int = 3, after: Position | None = None
) -> list[StoredEvent]:
    """Every event matching ``query``, page by page (small pages: paging is under test too)."""
    events: list[StoredEvent] = []
    while True:
        page, more = await store.events_after(query=query, after=after, limit=limit)
        events += page
        if not more:
            assert len(page) <= limit
            return events
        assert len(page) == limit
        after = page[-1].position


async def ids(store: DedupStore, **query: Any) -> list[str]:
    return [e.event_id for e in await read_all(store, EventQuery(**query))]


def at(timestamp: str) -> int:
    return utc_micros(timestamp)


async def test_each_filter_alone_and_all_together(store: DedupStore) -> None:
    await store.store_events(
        [
            make_event("a1", "auth", source="svc-a", timestamp="2026-11-24T08:00:00Z"),
            make_event("a2", "auth", source="svc-b", timestamp="2026-11-24T09:00:00Z"),
            make_event("o1", "orders", source="svc-a", timestamp="2026-11-24T10:00:00Z"),
        ]
    )
    await store.store_events(
        [
            make_event(
                "a3",
                "auth",
                source="svc-a",
                timestamp="2026-11-24T11:00:00Z",
                payload={"msg": "login failed"},
            ),
            make_event(
                "o2",
                "orders",
                source="svc-b",
                timestamp="2026-11-24T12:00:00Z",
                payload={"msg": "failed to charge"},
            ),
        ]
    )
    assert await ids(store) == ["a1", "a2", "o1", "a3", "o2"]
    assert await ids(store, topic="auth") == ["a1", "a2", "a3"]
    assert await ids(store, source="svc-b") == ["a2", "o2"]
    assert await ids(store, since_us=at("2026-11-24T10:00:00Z")) == ["o1", "a3", "o2"]
    assert await ids(store, until_us=at("2026-11-24T10:00:00Z")) == ["a1", "a2"]
    assert await ids(store, text="failed") == ["a3", "o2"]
    assert await ids(store, newest_first=True) == ["o2", "a3", "o1", "a2", "a1"]
    every = EventQuery(
        topic="auth",
        source="svc-a",
        since_us=at("2026-11-24T08:30:00Z"),
        until_us=at("2026-11-24T12:00:00Z"),
        text="failed",
    )
    assert [e.event_id for e in await read_all(store, every)] == ["a3"]
    assert await ids(store, topic="auth", source="svc-b", newest_first=True) == ["a2"]
    assert await ids(store, topic="nope") == []
    assert await ids(store, topic="orders", text="login") == []


async def test_newest_first_pages_without_gaps_or_repeats(store: DedupStore) -> None:
    for start in range(0, 25, 5):
        await store.store_events(
            [make_event(f"e{i:02}", "odd" if i % 2 else "even") for i in range(start, start + 5)]
        )
    newest_first = EventQuery(newest_first=True)
    for limit in (1, 4, 5, 25, 100):
        seen = await read_all(store, newest_first, limit=limit)
        assert [e.event_id for e in seen] == [f"e{i:02}" for i in reversed(range(25))]
        positions = [e.position for e in seen]
        assert positions == sorted(positions, reverse=True)
    assert await ids(store, topic="odd", newest_first=True) == [
        f"e{i:02}" for i in reversed(range(1, 25, 2))
    ]
    # Events written while a newest-first reader pages are above where it started: it goes on
    # down from its cursor, and sees them by starting again.
    first, more = await store.events_after(query=newest_first, limit=10)
    assert more
    await store.store_events([make_event("late")])
    rest = await read_all(store, newest_first, limit=10, after=first[-1].position)
    assert [e.event_id for e in first + rest] == [f"e{i:02}" for i in reversed(range(25))]
    assert (await ids(store, newest_first=True))[0] == "late"


async def test_since_and_until_compare_instants_whatever_the_offset(store: DedupStore) -> None:
    # In UTC: 07:59:59.999999, 08:00, 08:30, 09:00, 09:15, and the next day's 00:30.
    await store.store_events(
        [
            make_event("0800", timestamp="2026-11-24T10:00:00+02:00"),
            make_event("0900", timestamp="2026-11-24T09:00:00Z"),
            make_event("0830", timestamp="2026-11-24T03:30:00-05:00"),
            make_event("0915", timestamp="2026-11-24T10:15:00.000+01:00"),
            make_event("0759", timestamp="2026-11-24T07:59:59.999999Z"),
            make_event("0030", timestamp="2026-11-24T20:00:00-04:30"),
        ]
    )
    # As text "2026-11-24T03:30:00-05:00" sorts first and "...10:15:00.000+01:00" last: the
    # store compares the instants.
    since_eight = await ids(store, since_us=at("2026-11-24T09:00:00+01:00"))
    assert sorted(since_eight) == ["0030", "0800", "0830", "0900", "0915"]
    assert sorted(await ids(store, until_us=at("2026-11-24T08:00:00Z"))) == ["0759"]
    window = await ids(store, since_us=at("2026-11-24T08:30:00Z"), until_us=at("2026-11-24T09:15Z"))
    assert sorted(window) == ["0830", "0900"]
    assert await ids(store, since_us=at("2026-11-25T00:30:00Z")) == ["0030"]
    assert await ids(store, since_us=at("2026-11-25T00:30:00.000001Z")) == []


async def test_full_text_search_over_payload_and_source(store: DedupStore) -> None:
    await store.store_events(
        [
            make_event("nl", payload={"msg": "Connection refused\nretrying in 5s"}),
            make_event("debug", payload={"level": "debug", "msg": "connection pool resized"}),
            make_event("timeout", payload={"msg": "upstream timeout", "attempt": 3}),
            make_event("nested", payload={"error": {"kind": "Timeout", "codes": [504, "gw-down"]}}),
            make_event("src", source="billing-worker", payload={"ok": True}),
            make_event("plain", payload={"msg": "all good"}),
        ]
    )
    assert await ids(store, text="refused") == ["nl"]
    assert await ids(store, text="RETRYING") == ["nl"]  # any case; the \n separates words
    assert await ids(store, text="connection") == ["nl", "debug"]
    assert await ids(store, text="connection -debug") == ["nl"]
    assert await ids(store, text='"connection refused"') == ["nl"]
    assert await ids(store, text='"refused connection"') == []
    assert await ids(store, text="timeout") == ["timeout", "nested"]
    assert await ids(store, text="upstream timeout") == ["timeout"]
    assert await ids(store, text="refused or good") == ["nl", "plain"]
    assert await ids(store, text="gw-down") == ["nested"]
    assert await ids(store, text="504") == ["nested"]
    assert await ids(store, text="kind") == ["nested"]  # keys are words too
    assert await ids(store, text="billing") == ["src"]  # and the source
    assert await ids(store, text="conn") == []  # whole words only
    assert await ids(store, text="timeout", newest_first=True) == ["nested", "timeout"]
    with pytest.raises(SearchSyntaxError):
        await store.events_after(query=EventQuery(text="-debug"), limit=10)


async def test_what_a_batch_rolled_back_wrote_is_not_found(store: DedupStore) -> None:
    await store.check_writable()  # a canary event, written and rolled back
    assert await ids(store, text="canary") == []
    assert await ids(store, topic=".aggregator.canary") == []
    await store.store_events([make_event("kept", payload={"canary": "no"})])
    assert await ids(store, text="canary") == ["kept"]


async def test_one_event_by_its_key(store: DedupStore) -> None:
    event = make_event("a/b?c=ü", "auth.login", payload={"x": 1}).published_by("billing")
    await store.store_events([event, make_event("other", "auth.login")])
    found = await store.get_event("auth.login", "a/b?c=ü")
    assert found is not None
    assert (found.topic, found.event_id, found.payload, found.publisher) == (
        "auth.login",
        "a/b?c=ü",
        {"x": 1},
        "billing",
    )
    assert found.timestamp == event.timestamp and found.processed_at.endswith("Z")
    assert await store.get_event("auth.login", "missing") is None
    assert await store.get_event("other.topic", "a/b?c=ü") is None
