"""The producer's generated load, without a broker: topic names, the same events from the same
seed, exactly the intended duplicates, every topic used, valid events, padded payloads."""

from __future__ import annotations

import re

import orjson
import pytest

from aggregator.decoding import decode_wire
from aggregator.events import Event
from producer.load import (
    TOPIC_CATALOG,
    LoadSpec,
    generate_events,
    planned_duplicates,
    topic_names,
    wire_events,
)

TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


def test_topic_names_are_distinct_realistic_routing_keys() -> None:
    assert topic_names(3) == ["auth.login", "orders.created", "search.query"]
    many = topic_names(40)
    assert len(set(many)) == 40
    assert many[: len(TOPIC_CATALOG)] == list(TOPIC_CATALOG)
    assert many[len(TOPIC_CATALOG) :][:4] == [
        "svc-1.errors",
        "svc-1.requests",
        "svc-1.warnings",
        "svc-2.errors",
    ]
    assert all(TOPIC_PATTERN.match(name) for name in many)
    with pytest.raises(ValueError):
        topic_names(0)


def test_the_same_seed_gives_the_same_events() -> None:
    spec = LoadSpec(count=500, topics=5, dup_rate=0.3, seed=42)
    first = [event.wire for event in generate_events(spec)]
    again = [event.wire for event in generate_events(spec)]
    other = [event.wire for event in generate_events(LoadSpec(count=500, seed=43))]
    assert first == again
    assert first != other
    assert [w.body for w in wire_events(spec)] == first


@pytest.mark.parametrize(
    ("count", "dup_rate"),
    [(1, 0.5), (2, 1.0), (10, 0.0), (1000, 0.25), (999, 0.1), (5000, 0.5), (300, 1.0)],
)
def test_dup_rate_gives_exactly_the_intended_duplicates(count: int, dup_rate: float) -> None:
    spec = LoadSpec(count=count, topics=4, dup_rate=dup_rate, seed=count)
    expected = min(round(count * dup_rate), count - 1)
    assert spec.duplicates == planned_duplicates(count, dup_rate) == expected
    assert spec.distinct == count - expected

    seen: set[tuple[str, str]] = set()
    first_body: dict[tuple[str, str], bytes] = {}
    repeats = 0
    for event in generate_events(spec):
        if event.key in seen:
            repeats += 1
            # A duplicate repeats an earlier event exactly, as a retried publish does.
            assert event.wire == first_body[event.key]
        else:
            seen.add(event.key)
            first_body[event.key] = event.wire
    assert repeats == spec.duplicates
    assert len(seen) == spec.distinct


@pytest.mark.parametrize("topics", [1, 3, 12, 30])
def test_every_topic_is_used(topics: int) -> None:
    events = list(generate_events(LoadSpec(count=2000, topics=topics, seed=1)))
    assert {event.topic for event in events} == set(topic_names(topics))


def test_events_are_valid_on_the_wire() -> None:
    spec = LoadSpec(count=300, topics=20, dup_rate=0.2, seed=9)
    for event, wire in zip(generate_events(spec), wire_events(spec), strict=True):
        decoded = decode_wire(
            wire.body, max_event_bytes=1024 * 1024
        )  # what the worker does with an AMQP body
        assert decoded == event
        assert Event.model_validate(orjson.loads(wire.body)) == event
        assert (wire.topic, wire.event_id) == event.key
        assert event.timestamp.endswith("Z") and event.timestamp.startswith("2026-11-24T10:")
        assert event.payload["level"] in {"info", "warning", "error"}


def test_payload_bytes_pads_each_payload_exactly() -> None:
    padded = list(generate_events(LoadSpec(count=50, payload_bytes=1000, seed=2)))
    assert {len(orjson.dumps(event.payload)) for event in padded} == {1000}
    natural = list(generate_events(LoadSpec(count=50, payload_bytes=0, seed=2)))
    assert all("detail" not in event.payload for event in natural)
