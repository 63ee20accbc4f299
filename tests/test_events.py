"""The event model: every rule of the contract, accepted and rejected."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator.decoding import MAX_PAYLOAD_DEPTH, decode_wire, parse_request_body
from aggregator.errors import EventTooLarge, InvalidBody, InvalidEvents, Poison, TooManyEvents
from aggregator.events import Event

MAX_EVENT_BYTES = 1024 * 1024


def parse(raw: bytes, max_batch: int = 100, max_event_bytes: int = MAX_EVENT_BYTES) -> list[Event]:
    return parse_request_body(raw, max_batch=max_batch, max_event_bytes=max_event_bytes)


def decode(raw: bytes, max_event_bytes: int = MAX_EVENT_BYTES) -> Event:
    return decode_wire(raw, max_event_bytes=max_event_bytes)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "topic": "auth.login",
        "event_id": "6f1c-0001",
        "timestamp": "2026-11-24T10:00:00Z",
        "source": "svc-a",
        "payload": {"user": "alice"},
    }
    base.update(overrides)
    return base


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def errors_of(document: Any, max_batch: int = 100) -> list[dict[str, Any]]:
    with pytest.raises(InvalidEvents) as caught:
        parse(body(document), max_batch=max_batch)
    errors: list[dict[str, Any]] = caught.value.errors
    return errors


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


# -- what the store would not keep as sent: refused at the edge, the same way on both sides ------


def nested(depth: int) -> dict[str, Any]:
    """A payload whose deepest container is at ``depth`` (the payload object itself is 1)."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


def test_the_payload_depth_limit_is_exact() -> None:
    [ok] = parse(body(event(payload=nested(MAX_PAYLOAD_DEPTH))))
    assert orjson.loads(ok.wire)["payload"] == nested(MAX_PAYLOAD_DEPTH)
    [error] = errors_of(event(payload=nested(MAX_PAYLOAD_DEPTH + 1)))
    assert error["type"] == "depth"
    assert error["loc"] == ["body", "payload", *["a"] * MAX_PAYLOAD_DEPTH]


@pytest.mark.parametrize("depth", [MAX_PAYLOAD_DEPTH + 1, 300, 1000])
def test_too_deep_is_refused_by_the_api_and_poison_to_the_worker(depth: int) -> None:
    # 255-1024 levels: orjson reads them but cannot write them again.
    raw = body(event(payload=nested(depth))) if depth < 250 else deep_raw(depth)
    with pytest.raises(InvalidEvents):
        parse(raw)
    with pytest.raises(Poison, match="deeper than"):
        decode(raw)


def deep_raw(depth: int) -> bytes:
    """An event whose payload nests ``depth`` levels, as bytes (orjson cannot write it)."""
    payload = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    return body(event(payload={})).replace(b'"payload":{}', b'"payload":' + payload)


def test_a_deep_event_in_a_batch_names_its_index() -> None:
    items = [event(event_id="ok"), event(event_id="deep", payload=nested(120))]
    [error] = errors_of(items)
    assert error["loc"][:3] == ["body", 1, "payload"]


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 0, 2**63, 12345678901234567890])
def test_64_bit_integers_are_kept_exactly(number: int) -> None:
    raw = body(event(payload={"n": number, "list": [number]}))
    [parsed] = parse(raw)
    assert parsed.payload == {"n": number, "list": [number]}
    assert orjson.loads(parsed.wire)["payload"]["n"] == number
    assert decode(parsed.wire) == parsed


def with_number(digits: str) -> bytes:
    raw = b'{"topic":"t","event_id":"e","timestamp":"2026-11-24T10:00:00Z","source":"s",'
    return raw + b'"payload":{"deep":{"n":[1,' + digits.encode() + b"]}}}"


@pytest.mark.parametrize("digits", ["18446744073709551616", "-9223372036854775809", "9" * 300])
def test_integers_beyond_64_bits_are_refused_not_rounded(digits: str) -> None:
    raw = with_number(digits)
    with pytest.raises(InvalidEvents) as caught:
        parse(raw)
    [error] = caught.value.errors
    assert error["type"] == "int_range"
    assert error["loc"] == ["body", "payload", "deep", "n", 1]
    with pytest.raises(Poison, match="outside 64 bits"):
        decode(raw)


def test_numbers_beyond_a_double_are_not_json_we_read() -> None:
    raw = with_number("9" * 5000)
    with pytest.raises(InvalidBody, match="infinity"):
        parse(raw)
    with pytest.raises(Poison, match="not valid JSON"):
        decode(raw)


def test_long_digit_runs_in_strings_and_floats_are_fine() -> None:
    payload = {"id": "123456789012345678901234567890", "pi": 3.14159265358979323846264338}
    [parsed] = parse(body(event(payload=payload)))
    assert parsed.payload["id"] == payload["id"]
    assert decode(parsed.wire) == parsed


def test_an_event_is_measured_as_it_is_stored() -> None:
    # 1e15 is 4 bytes as sent and 18 as orjson writes it back (1000000000000000.0).
    raw = b'{"topic":"t","event_id":"e","timestamp":"2026-11-24T10:00:00Z","source":"s",'
    raw += b'"payload":{"n":[' + b",".join([b"1e15"] * 1000) + b"]}}"
    assert len(raw) < 6000
    with pytest.raises(EventTooLarge, match="limit is 10000"):
        parse(raw, max_event_bytes=10_000)
    with pytest.raises(Poison, match="limit is 10000"):
        decode(raw, max_event_bytes=10_000)
    [parsed] = parse(raw, max_event_bytes=20_000)
    assert len(parsed.wire) > 18_000


def test_a_large_event_in_a_batch_names_its_index() -> None:
    items = [event(event_id=str(i)) for i in range(3)]
    items[2]["payload"] = {"blob": "x" * 3000}
    with pytest.raises(EventTooLarge, match="event 2 is") as caught:
        parse(body(items), max_event_bytes=2048)
    assert caught.value.index == 2


def test_an_amqp_body_over_the_limit_is_poison_before_it_is_parsed() -> None:
    with pytest.raises(Poison, match="the body is 5000 bytes"):
        decode(b" " * 5000, max_event_bytes=4096)


def test_poison_reasons_with_client_text_stay_one_line() -> None:
    forged = "x\n2026-12-01 10:00:00,000 ERROR worker: forged"
    with pytest.raises(Poison) as caught:
        decode(body({**event(), forged: 1}))
    reason = str(caught.value)
    assert "\n" not in reason and "\\n2026-12-01" in reason
