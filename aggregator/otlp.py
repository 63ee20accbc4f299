"""OpenTelemetry log records as events: one event per ``LogRecord``.

* ``topic``: the resource's ``service.name``, characters outside ``[A-Za-z0-9._-]`` replaced by
  ``_``, cut at 255; ``otel`` without one;
* ``source``: ``service.name`` (``otel`` without), plus ``/`` and ``service.instance.id`` when
  present, cut at 255 characters;
* ``timestamp``: ``time_unix_nano``, else ``observed_time_unix_nano``, as RFC 3339 with all nine
  digits; when both are 0, the request's arrival;
* ``event_id``: SHA-256 (hex) of the resource, the scope and the record;
* ``payload``: ``body``, ``severity_text``, ``severity_number``, ``attributes``, ``resource``
  (its attributes), ``scope`` (name, version, and attributes when any); ``trace_id`` and
  ``span_id`` (hex), ``flags`` and ``event_name`` when set.

Values (``AnyValue``) become JSON as the proto3 JSON mapping writes them: bytes as base64, a
double that is not finite as ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (JSON has no such
numbers, and the event encoder would write ``null``), an empty value as ``null``.

The event id hashes the deterministic protobuf encoding of the resource (with its schema URL),
the scope (with its schema URL) and the record, each length-prefixed: the record's whole
content, so an exporter that sends a batch again (after a lost answer, a timeout) sends the same
ids, and the store keeps each record once. Two records that are the same in every field are one
event. 256 bits of SHA-256 leave no collision to reason about; the id is 64 of the 255 bytes an
event id may have.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from aggregator.decoding import event_from_fields
from aggregator.errors import EventTooLarge, InvalidRecord
from aggregator.events import Event
from aggregator.timestamps import from_unix_nanos

# The payload walk (depth past 100, integers outside 64 bits) cannot find anything in a payload
# made here: protobuf's integers are 64-bit at most, and its decoder refuses nesting past 100
# messages (otlp_wire.MAX_MESSAGE_DEPTH), while each level of a value costs at least two of
# them (AnyValue, then ArrayValue or KeyValueList and KeyValue), four of which are the envelope:
# at most 2 + 96 / 2 = 50 levels. The walk costs a fifth of the mapping, so it is skipped.
PAYLOADS_NEED_NO_WALK = True
DEFAULT_TOPIC = "otel"
MAX_NAME = 255
# How many refusal reasons one answer quotes (its error_message stays short).
MAX_REASONS = 5
_NOT_TOPIC = re.compile(r"[^A-Za-z0-9._-]")
_DOMAIN = b"aggregator/otlp-logs/v1\x00"
_NOT_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


@dataclass
class Mapped:
    """What a request's records became: events to publish, and the records refused, by reason."""

    events: list[Event] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def refuse(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    @property
    def error_message(self) -> str:
        """For ``partial_success.error_message``: how many, and the first reasons."""
        if not self.rejected:
            return ""
        total = self.rejected + len(self.events)
        more = "; ..." if self.rejected > len(self.reasons) else ""
        return f"{self.rejected} of {total} log records refused: " + "; ".join(self.reasons) + more


def count_records(request: ExportLogsServiceRequest) -> int:
    return sum(
        len(scope_logs.log_records)
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
    )


def topic_and_source(resource: dict[str, Any]) -> tuple[str, str]:
    name = resource.get("service.name")
    if not isinstance(name, str) or not name:
        name = DEFAULT_TOPIC
    topic = _NOT_TOPIC.sub("_", name)[:MAX_NAME]
    instance = resource.get("service.instance.id")
    source = f"{name}/{instance}" if isinstance(instance, str) and instance else name
    return topic, source[:MAX_NAME]


def map_request(request: ExportLogsServiceRequest, *, arrival: str, max_event_bytes: int) -> Mapped:
    """Every record of ``request`` as an event, or refused alone with its reason (a payload
    the store would change, an event over ``max_event_bytes``)."""
    mapped = Mapped()
    number = 0
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        topic, source = topic_and_source(resource)
        resource_hash = hashlib.sha256(_DOMAIN)
        _update(resource_hash, resource_logs.resource.SerializeToString(deterministic=True))
        _update(resource_hash, resource_logs.schema_url.encode())
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_json: dict[str, Any] = {"name": scope.name, "version": scope.version}
            if scope.attributes:
                scope_json["attributes"] = attributes(scope.attributes)
            scope_hash = resource_hash.copy()
            _update(scope_hash, scope.SerializeToString(deterministic=True))
            _update(scope_hash, scope_logs.schema_url.encode())
            for record in scope_logs.log_records:
                number += 1
                digest = scope_hash.copy()
                _update(digest, record.SerializeToString(deterministic=True))
                payload: dict[str, Any] = {
                    "body": any_value(record.body) if record.HasField("body") else None,
                    "severity_text": record.severity_text,
                    "severity_number": record.severity_number,
                    "attributes": attributes(record.attributes),
                    "resource": resource,
                    "scope": scope_json,
                }
                trace_id = _id_hex(record.trace_id, 16)
                if trace_id is not None:
                    payload["trace_id"] = trace_id
                span_id = _id_hex(record.span_id, 8)
                if span_id is not None:
                    payload["span_id"] = span_id
                if record.flags:
                    payload["flags"] = record.flags
                if record.event_name:
                    payload["event_name"] = record.event_name
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                fields = {
                    "topic": topic,
                    "event_id": digest.hexdigest(),
                    "timestamp": from_unix_nanos(nanos) if nanos else arrival,
                    "source": source,
                    "payload": payload,
                }
                try:
                    event = event_from_fields(
                        fields,
                        max_event_bytes=max_event_bytes,
                        walk=not PAYLOADS_NEED_NO_WALK,
                        where=f"log record {number}",
                    )
                except (InvalidRecord, EventTooLarge) as exc:
                    mapped.refuse(str(exc))
                    continue
                mapped.events.append(event)
    return mapped


def _update(digest: Any, part: bytes) -> None:
    """Length-prefixed, so no two different sequences of parts hash alike."""
    digest.update(len(part).to_bytes(8, "big"))
    digest.update(part)


def _id_hex(raw: bytes, size: int) -> str | None:
    """A trace (16 bytes) or span (8 bytes) id as hex; None where the spec says to treat it as
    absent: a wrong length, or all zeros."""
    if len(raw) != size or not any(raw):
        return None
    return raw.hex()


def attributes(pairs: Any) -> dict[str, Any]:
    """Key-value pairs as a JSON object (a repeated key: the last one wins)."""
    return {pair.key: any_value(pair.value) for pair in pairs}


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        if math.isfinite(number):
            return number
        return _NOT_FINITE.get(number, "NaN")
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    # Unset, or string_value_strindex: a reference into a profiles dictionary, which the spec
    # says a logs receiver treats as absent.
    return None
