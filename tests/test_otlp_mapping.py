"""OTLP log records into events, without a broker: the mapping, the ids, both encodings, answers."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from aggregator.decoding import MAX_PAYLOAD_DEPTH, decode_wire, payload_problem
from aggregator.errors import InvalidBody
from aggregator.events import Event
from aggregator.otlp import Mapped, map_request, topic_and_source
from aggregator.otlp_wire import JSON, PROTOBUF, decode_request, encode_response, encode_status
from tests.support.otlp import SPAN_ID, TRACE_ID, as_json, record, request

ARRIVAL = "2026-12-01T00:00:00.000000Z"
LIMIT = 1024 * 1024


def mapped(message: ExportLogsServiceRequest, max_event_bytes: int = LIMIT) -> Mapped:
    return map_request(message, arrival=ARRIVAL, max_event_bytes=max_event_bytes)


def events_of(message: ExportLogsServiceRequest) -> list[Event]:
    result = mapped(message)
    assert result.rejected == 0, result.reasons
    return result.events


def test_a_record_becomes_an_event_as_documented() -> None:
    message = request(
        record(attributes={"user.id": 42, "ok": True}, event_name="auth.login"),
        resource={"service.name": "checkout api/v2", "service.instance.id": "pod-7", "zone": "b"},
    )
    [event] = events_of(message)
    assert event.topic == "checkout_api_v2"
    assert event.source == "checkout api/v2/pod-7"
    assert event.timestamp == "2026-11-24T10:00:00.123456789Z"
    assert len(event.event_id) == 64 and int(event.event_id, 16) >= 0
    assert event.payload == {
        "body": "user signed in",
        "severity_text": "INFO",
        "severity_number": 9,
        "attributes": {"user.id": 42, "ok": True},
        "resource": {
            "service.name": "checkout api/v2",
            "service.instance.id": "pod-7",
            "zone": "b",
        },
        "scope": {"name": "app.auth", "version": "1.4.0"},
        "trace_id": TRACE_ID.hex(),
        "span_id": SPAN_ID.hex(),
        "flags": 1,
        "event_name": "auth.login",
    }
    # What is published is what the worker accepts and stores unchanged.
    assert decode_wire(event.wire, max_event_bytes=LIMIT) == event


@pytest.mark.parametrize(
    ("resource", "topic", "source"),
    [
        ({}, "otel", "otel"),
        ({"service.name": ""}, "otel", "otel"),
        ({"service.name": 7}, "otel", "otel"),
        ({"service.name": "billing.worker-2"}, "billing.worker-2", "billing.worker-2"),
        ({"service.name": "café"}, "caf_", "café"),
        ({"service.name": "a", "service.instance.id": "i-1"}, "a", "a/i-1"),
        ({"service.name": "x" * 300}, "x" * 255, "x" * 255),
    ],
)
def test_topic_and_source_come_from_the_service(
    resource: dict[str, Any], topic: str, source: str
) -> None:
    assert topic_and_source(resource) == (topic, source)


def test_timestamps_keep_nanoseconds_and_fall_back() -> None:
    observed = record(time_ns=0, observed_ns=1_795_514_400_000_000_001)
    neither = record(time_ns=0, observed_ns=0)
    both = record(time_ns=5, observed_ns=1_795_514_400_000_000_001)
    events = events_of(request(observed, neither, both))
    assert [e.timestamp for e in events] == [
        "2026-11-24T10:00:00.000000001Z",
        ARRIVAL,
        "1970-01-01T00:00:00.000000005Z",
    ]


def test_values_follow_the_proto3_json_mapping() -> None:
    body = {"n": -(2**63), "big": 2**63 - 1, "list": [1.5, "two", None, False], "raw": b"\x00\xff"}
    special = record(body, attributes={"nan": math.nan, "inf": math.inf, "ninf": -math.inf})
    empty = record(None, attributes={}, trace=False, severity=("", 0))
    empty.attributes.append(KeyValue(key="unset"))  # a value with nothing in it
    first, second = events_of(request(special, empty))
    assert first.payload["body"] == {
        "n": -(2**63),
        "big": 2**63 - 1,
        "list": [1.5, "two", None, False],
        "raw": "AP8=",
    }
    assert first.payload["attributes"] == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity"}
    assert second.payload["body"] is None
    assert second.payload["attributes"] == {"unset": None}
    assert {"trace_id", "span_id", "flags", "event_name"}.isdisjoint(second.payload)


def test_invalid_trace_and_span_ids_are_left_out() -> None:
    zeros = record(trace=False, trace_id=bytes(16), span_id=bytes(8))
    short = record(trace=False, trace_id=b"\x01" * 15, span_id=b"\x01" * 9)
    for event in events_of(request(zeros, short)):
        assert "trace_id" not in event.payload and "span_id" not in event.payload


def test_the_same_content_has_the_same_id_and_any_change_another() -> None:
    base = events_of(request(record(), record("other body")))
    again = events_of(request(record(), record("other body")))
    assert [e.event_id for e in base] == [e.event_id for e in again]
    assert base[0].event_id != base[1].event_id
    variants = [
        request(record(attributes={"user.id": 43})),
        request(record(observed_ns=1)),
        request(record(), resource={"service.name": "checkout", "host.name": "h"}),
        request(record(), scope=("app.auth", "1.4.1")),
        request(record(severity=("INFO", 10))),
    ]
    ids = {events_of(variant)[0].event_id for variant in variants}
    assert base[0].event_id not in ids and len(ids) == len(variants)


def test_protobuf_and_json_of_a_request_make_the_same_events() -> None:
    message = request(
        record({"nested": {"deep": [1, 2, {"x": b"\x01"}]}}, attributes={"d": 0.25}),
        record(time_ns=0, observed_ns=123, trace=False),
        resource={"service.name": "web", "service.instance.id": "7"},
    )
    from_protobuf = decode_request(message.SerializeToString(), PROTOBUF)
    from_json = decode_request(as_json(message), JSON)
    assert events_of(from_protobuf) == events_of(from_json)
    assert [e.event_id for e in events_of(from_protobuf)] == [
        e.event_id for e in events_of(from_json)
    ]


def test_otlp_json_reads_the_specs_deviations() -> None:
    document = orjson.loads(as_json(request(record())))
    log_record = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert log_record["traceId"] == TRACE_ID.hex().upper()  # hex, not base64
    log_record["timeUnixNano"] = int(log_record["timeUnixNano"])  # 64-bit: a number or a string
    log_record["someFutureField"] = {"ignored": True}  # unknown fields are ignored
    document["resourceLogs"][0]["futureEnvelopeField"] = 1
    parsed = decode_request(orjson.dumps(document), JSON)
    assert events_of(parsed) == events_of(request(record()))
    log_record["traceId"] = "not hex at all"
    with pytest.raises(InvalidBody, match="traceId"):
        decode_request(orjson.dumps(document), JSON)


@pytest.mark.parametrize(
    ("body", "media"),
    [
        (b"\xff\xff\xff", PROTOBUF),
        (b"{not json", JSON),
        (b"[1, 2]", JSON),
        (b'{"resourceLogs": 5}', JSON),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}', JSON),
    ],
)
def test_what_is_not_a_request_is_bad_data(body: bytes, media: str) -> None:
    with pytest.raises(InvalidBody):
        decode_request(body, media)


def nested(levels: int) -> AnyValue:
    inner = AnyValue(string_value="bottom")
    for _ in range(levels):
        inner = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=inner)]))
    return inner


def test_nesting_past_the_protobuf_decoder_is_bad_data_in_both_encodings() -> None:
    fine = request(record(body=None))
    fine.resource_logs[0].scope_logs[0].log_records[0].body.CopyFrom(nested(25))
    assert events_of(decode_request(fine.SerializeToString(), PROTOBUF))
    deep = orjson.loads(as_json(fine))
    body = deep["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]
    for _ in range(20):
        body = {"kvlistValue": {"values": [{"key": "k", "value": body}]}}
    deep["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"] = body
    with pytest.raises(InvalidBody):
        decode_request(orjson.dumps(deep), JSON)
    # The same depth as protobuf bytes: the message cannot even be built past the limit, so
    # it is written by hand.
    with pytest.raises(InvalidBody):
        decode_request(_deep_protobuf(60), PROTOBUF)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand."""
    assert len(payload) < 2**14
    size = len(payload)
    length = bytes([size]) if size < 128 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([number << 3 | 2]) + length + payload


def _in_a_request(body: bytes) -> bytes:
    # resource_logs > scope_logs > log_records > body
    return _field(1, _field(2, _field(2, _field(5, body))))


def _deep_protobuf(levels: int, *, arrays: bool = False) -> bytes:
    body = _field(1, b"bottom")  # AnyValue.string_value
    for _ in range(levels):
        if arrays:  # array_value > values
            body = _field(5, _field(1, body))
        else:  # kvlist_value > values (KeyValue: key, value)
            body = _field(6, _field(1, _field(1, b"k") + _field(2, body)))
    return _in_a_request(body)


def test_the_deepest_payload_the_decoder_takes_needs_no_payload_walk() -> None:
    """Why the mapping may skip the payload walk: the protobuf decoder refuses nesting long
    before a payload could pass 100 levels (arrays are the cheapest nesting)."""
    deepest = None
    for levels in range(10, 100):
        try:
            deepest = decode_request(_deep_protobuf(levels, arrays=True), PROTOBUF)
        except InvalidBody:
            break
    assert deepest is not None and 40 < levels < 60
    [event] = events_of(deepest)
    depth, value = 1, event.payload["body"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth < MAX_PAYLOAD_DEPTH and payload_problem(event.payload) is None


def test_a_record_too_large_is_refused_alone() -> None:
    message = request(record("small"), record("x" * 5000), record("small too"))
    result = mapped(message, max_event_bytes=2048)
    assert [e.payload["body"] for e in result.events] == ["small", "small too"]
    assert result.rejected == 1
    assert result.error_message.startswith("1 of 3 log records refused: log record 2 is ")
    assert "AGG_MAX_EVENT_BYTES" in result.error_message


def test_answers_in_both_encodings() -> None:
    assert encode_response(PROTOBUF) == b""
    assert encode_response(JSON) == b"{}"
    partial = ExportLogsServiceResponse.FromString(encode_response(PROTOBUF, 2, "2 refused"))
    success = partial.partial_success
    assert partial.HasField("partial_success")
    assert (success.rejected_log_records, success.error_message) == (2, "2 refused")
    as_json_response = json_format.Parse(
        encode_response(JSON, 2, "2 refused"), ExportLogsServiceResponse()
    )
    assert as_json_response == partial
    status = Status.FromString(encode_status(PROTOBUF, 400, "bad data: " + "é" * 300))
    assert (status.code, status.message) == (3, "bad data: " + "é" * 300)
    assert orjson.loads(encode_status(JSON, 503, "later")) == {"code": 14, "message": "later"}
