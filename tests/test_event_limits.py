"""What the store would not keep as sent, refused at the edge the same way on both sides (the
API's parse, the worker's decode): depth, integers beyond 64 bits, numbers beyond a double, size;
and a poison reason stays one line."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator.decoding import MAX_PAYLOAD_DEPTH
from aggregator.errors import EventTooLarge, InvalidBody, InvalidEvents, Poison
from tests.support.event_documents import body, decode, errors_of, event, parse


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
