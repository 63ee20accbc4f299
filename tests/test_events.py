"""The event model: every rule of the contract, accepted and rejected."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator.errors import InvalidBody, Poison, TooManyEvents
from aggregator.events import Event
from tests.support.event_documents import body, decode, errors_of, event, parse


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"topic": "a"},
        {"topic": "A-z_0.9"},
        {"topic": "t" * 255},
        {"event_id": "x"},
        {"event_id": "é" * 127},  # 254 bytes
        {"event_id": "ü🙂 spaces and unicode are fine"},
        {"timestamp": "2026-11-24T10:00:00+02:00"},
        {"timestamp": "2026-11-24T10:00:00.123456-05:30"},
        {"timestamp": "2026-11-24 10:00:00Z"},
        {"source": "s" * 255},
        {"payload": {}},
        {"payload": {"nested": {"list": [1, 2.5, None, True, "x"]}}},
    ],
)
def test_valid_events_are_accepted_as_sent(overrides: dict[str, Any]) -> None:
    document = event(**overrides)
    [parsed] = parse(body(document), max_batch=10)
    assert parsed.model_dump() == document
    assert orjson.loads(parsed.wire) == document


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"topic": ""}, "topic"),
        ({"topic": "t" * 256}, "topic"),
        ({"topic": "has space"}, "topic"),
        ({"topic": "star.*"}, "topic"),
        ({"topic": "hash.#"}, "topic"),
        ({"topic": "ünïcode"}, "topic"),
        ({"topic": 5}, "topic"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "é" * 128}, "event_id"),  # 256 bytes
        ({"event_id": "x" * 256}, "event_id"),
        ({"event_id": "tab\there"}, "event_id"),
        ({"event_id": "nul\x00"}, "event_id"),
        ({"event_id": "del\x7f"}, "event_id"),
        ({"event_id": "c1\x85"}, "event_id"),
        ({"event_id": 42}, "event_id"),
        ({"timestamp": "2026-11-24T10:00:00"}, "timestamp"),
        ({"timestamp": "2026-11-24"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": ""}, "timestamp"),
        ({"timestamp": 1764000000}, "timestamp"),
        ({"timestamp": 1764000000.5}, "timestamp"),
        ({"source": ""}, "source"),
        ({"source": "s" * 256}, "source"),
        ({"source": None}, "source"),
        ({"payload": []}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"payload": None}, "payload"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_field_is_named(overrides: dict[str, Any], field: str) -> None:
    [error] = errors_of(event(**overrides))
    assert error["loc"] == ["body", field]
    assert error["msg"]


@pytest.mark.parametrize("missing", ["topic", "event_id", "timestamp", "source", "payload"])
def test_every_field_is_required(missing: str) -> None:
    document = event()
    del document[missing]
    [error] = errors_of(document)
    assert error == {"loc": ["body", missing], "msg": "Field required", "type": "missing"}


def test_lone_surrogate_is_not_utf8_json() -> None:
    raw = b'{"topic":"t","event_id":"\\ud800","timestamp":"2026-11-24T10:00:00Z","source":"s"}'
    with pytest.raises(InvalidBody, match="surrogate"):
        parse(raw, max_batch=1)
    with pytest.raises(ValueError, match="surrogate"):
        decode(raw)


def test_array_and_envelope_name_index_and_field() -> None:
    bad = [event(event_id="ok-1"), event(event_id="ok-2", topic="bad topic"), event(source="")]
    array_errors = errors_of(bad)
    assert [e["loc"] for e in array_errors] == [["body", 1, "topic"], ["body", 2, "source"]]
    envelope_errors = errors_of({"events": bad})
    assert [e["loc"] for e in envelope_errors] == [
        ["body", "events", 1, "topic"],
        ["body", "events", 2, "source"],
    ]


def test_batch_shapes_parse_in_order() -> None:
    items = [event(event_id=f"id-{i}") for i in range(5)]
    for document in (items, {"events": items}):
        parsed = parse(body(document), max_batch=5)
        assert [e.event_id for e in parsed] == [f"id-{i}" for i in range(5)]


@pytest.mark.parametrize("document", [[], {"events": []}])
def test_empty_batch_is_invalid(document: Any) -> None:
    [error] = errors_of(document)
    assert "empty" in error["msg"]


@pytest.mark.parametrize(
    "document",
    [{"events": "nope"}, {"events": [], "more": 1}, "a string", 42, None, True],
)
def test_other_shapes_are_invalid(document: Any) -> None:
    assert errors_of(document)


def test_over_the_batch_limit() -> None:
    with pytest.raises(TooManyEvents):
        parse(body([event(event_id=str(i)) for i in range(4)]), max_batch=3)


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b'{"topic": }'])
def test_not_json(raw: bytes) -> None:
    with pytest.raises(InvalidBody):
        parse(raw, max_batch=10)


def test_wire_decoding_accepts_the_contract_format() -> None:
    document = event()
    assert decode(orjson.dumps(document)) == Event.model_validate(document)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\x01binary", "not valid JSON"),
        (b"[1, 2]", "not an event object"),
        (b'"text"', "not an event object"),
        (orjson.dumps(event(timestamp="2026-11-24T10:00:00")), "timestamp"),
        (orjson.dumps({"topic": "t"}), "event_id"),
    ],
)
def test_wire_poison_has_a_one_line_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Poison, match=reason) as caught:
        decode(raw)
    assert "\n" not in str(caught.value)


def test_identity_is_topic_and_event_id() -> None:
    a = Event.model_validate(event(payload={"v": 1}))
    b = Event.model_validate(event(payload={"v": 2}, source="other"))
    c = Event.model_validate(event(topic="other.topic"))
    assert a.key == b.key
    assert a.key != c.key
