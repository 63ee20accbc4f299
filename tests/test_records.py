"""JSON records into events, without a broker: wrapping, times, ids, sources, the line named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aggregator.decoding import decode_wire
from aggregator.errors import EventTooLarge, InvalidBody, InvalidRecord, TooManyEvents
from aggregator.events import Event
from aggregator.records import Rules, events_from_body

ARRIVAL = "2026-12-01T00:00:00.000000Z"
LIMIT = 1024 * 1024


def rules(**overrides: Any) -> Rules:
    values: dict[str, Any] = {
        "topic": "app.log",
        "time_key": "date",
        "id_key": None,
        "source_key": "host",
        "arrival": ARRIVAL,
        "max_batch": 100,
        "max_event_bytes": LIMIT,
    }
    values.update(overrides)
    return Rules(**values)


def ndjson(*records: Any) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def events(body: bytes, *, lines: bool = True, **overrides: Any) -> list[Event]:
    return events_from_body(body, ndjson=lines, rules=rules(**overrides))


def test_a_record_is_wrapped_whole_as_the_payload() -> None:
    record = {"date": 1795514400.123456, "log": "GET /health 200", "host": "web-1", "n": 1}
    [event] = events(ndjson(record))
    assert event.topic == "app.log"
    assert event.payload == record  # the time and source fields stay in it
    assert event.timestamp == "2026-11-24T10:00:00.123456Z"
    assert event.source == "web-1"
    assert len(event.event_id) == 64
    assert decode_wire(event.wire, max_event_bytes=LIMIT) == event


@pytest.mark.parametrize(
    ("value", "timestamp"),
    [
        (1795514400, "2026-11-24T10:00:00.000000Z"),  # Fluent Bit's epoch
        (1795514400.5, "2026-11-24T10:00:00.500000Z"),  # its double
        ("2026-11-24T10:00:00.123456Z", "2026-11-24T10:00:00.123456Z"),  # its iso8601
        ("2026-11-24T11:00:00.123456789+01:00", "2026-11-24T11:00:00.123456789+01:00"),  # Vector
        (None, ARRIVAL),
    ],
)
def test_times_are_read_from_the_time_field(value: Any, timestamp: str) -> None:
    [event] = events(ndjson({"date": value, "msg": "x"}))
    assert event.timestamp == timestamp
    [no_field] = events(ndjson({"msg": "x"}))
    assert no_field.timestamp == ARRIVAL


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("2026-11-24 10:00:00.123456", "timezone"),  # Fluent Bit's java_sql_timestamp
        ("yesterday", "ISO 8601"),
        (True, "seconds since 1970"),
        ({"sec": 1}, "seconds since 1970"),
        (1795514400123, "outside years"),  # milliseconds (epoch_ms) are not seconds
    ],
)
def test_a_time_that_is_not_one_is_refused_naming_line_and_field(
    value: Any, complaint: str
) -> None:
    body = ndjson({"msg": "fine"}) + b"\n" + ndjson({"date": value})
    with pytest.raises(InvalidRecord, match=f"^line 3: the time field 'date'.*{complaint}"):
        events(body)


def test_ids_come_from_the_id_field_or_the_content() -> None:
    first, second = events(ndjson({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}))
    assert first.event_id == second.event_id  # the same record, keys in another order
    [changed] = events(ndjson({"a": 1, "b": [1, 3]}))
    assert changed.event_id != first.event_id
    by_id = events(ndjson({"rid": "req-7"}, {"rid": 42}, {"other": 1}), id_key="rid")
    assert [e.event_id for e in by_id[:2]] == ["req-7", "42"]
    assert len(by_id[2].event_id) == 64  # no id field: the hash
    for bad in (1.5, None, ["x"], True):
        with pytest.raises(InvalidRecord, match="^line 1: the id field 'rid'"):
            events(ndjson({"rid": bad}), id_key="rid")
    with pytest.raises(InvalidRecord, match="^line 1: event_id"):
        events(ndjson({"rid": "x" * 300}), id_key="rid")


def test_the_source_is_the_source_field_when_it_is_usable() -> None:
    sources = [
        e.source
        for e in events(
            ndjson({"host": "web-1"}, {"host": ""}, {"host": 7}, {"host": "h" * 256}, {})
        )
    ]
    assert sources == ["web-1", "ingest", "ingest", "ingest", "ingest"]
    [named] = events(ndjson({"hostname": "db-2"}), source_key="hostname")
    assert named.source == "db-2"


def test_an_event_is_taken_as_it_is_within_its_topic() -> None:
    event = {
        "topic": "app.log",
        "event_id": "e-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "source": "svc",
        "payload": {"k": "v"},
    }
    [taken] = events(ndjson(event))
    assert taken.model_dump() == event
    with pytest.raises(InvalidRecord, match="^line 1: an event of topic 'other'"):
        events(ndjson({**event, "topic": "other"}))
    with pytest.raises(InvalidRecord, match="^line 1: timestamp"):
        events(ndjson({**event, "timestamp": "2026-11-24T10:00:00"}))


def test_ndjson_lines_are_counted_and_named() -> None:
    body = b'{"a": 1}\r\n\n   \n{"b": 2}'  # CRLF, blank lines, no final newline (Vector)
    assert [e.payload for e in events(body)] == [{"a": 1}, {"b": 2}]
    with pytest.raises(InvalidRecord, match="^line 3: not valid JSON"):
        events(b'{"a": 1}\n\n{"b": \n{"c": 3}\n')
    with pytest.raises(InvalidRecord, match="^line 2: a record must be a JSON object, not array"):
        events(b'{"a": 1}\n[1, 2]\n')
    with pytest.raises(InvalidRecord, match="not str"):
        events(b'"just text"\n')
    with pytest.raises(InvalidBody, match="no records"):
        events(b"\n \n")


def test_a_json_body_is_an_array_an_object_or_ndjson_sent_as_json() -> None:
    array = orjson.dumps([{"a": 1}, {"b": 2}])
    assert [e.payload for e in events(array, lines=False)] == [{"a": 1}, {"b": 2}]
    assert [e.payload for e in events(b'{"one": 1}', lines=False)] == [{"one": 1}]
    # Fluent Bit before 3.0.4: json_lines with Content-Type application/json.
    assert len(events(ndjson({"a": 1}, {"b": 2}), lines=False)) == 2
    with pytest.raises(InvalidRecord, match="^element 1: a record must be a JSON object"):
        events(b'[{"a": 1}, 5]', lines=False)
    with pytest.raises(InvalidBody, match="no records"):
        events(b"[]", lines=False)


def test_what_the_store_would_change_is_refused() -> None:
    deep: dict[str, Any] = {}
    for _ in range(150):
        deep = {"d": deep}
    with pytest.raises(InvalidRecord, match="^line 2: payload.d.d.*deeper than 100"):
        events(ndjson({"ok": 1}, deep))
    huge = b'{"ok": 1}\n{"n": 123456789012345678901234567890}\n'
    with pytest.raises(InvalidRecord, match="^line 2: payload.n: integer .* outside 64 bits"):
        events(huge)
    with pytest.raises(EventTooLarge, match="^line 1 is .* bytes as an event"):
        events(ndjson({"big": "x" * 5000}), max_event_bytes=2048)


def test_more_records_than_a_batch_are_refused() -> None:
    with pytest.raises(TooManyEvents, match="more than 3 records"):
        events(ndjson(*({"i": i} for i in range(4))), max_batch=3)
    assert len(events(ndjson(*({"i": i} for i in range(3))), max_batch=3)) == 3
