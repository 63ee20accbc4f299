"""Any JSON records as events, for ``POST /ingest/{topic}``: NDJSON lines or a JSON array.

What log shippers send as they are (Fluent Bit's ``json_lines`` and ``json``, Vector's ``json``
codec with either framing): objects with fields of their own. Each becomes one event of the
path's topic:

* a record with exactly the five event fields is taken as an event; its ``topic`` must be the
  path's (a request names one topic);
* any other object is wrapped, unchanged, as the payload. ``timestamp``: the record's time key
  (default ``date``, Fluent Bit's): a number is seconds since 1970 (Fluent Bit's ``double`` and
  ``epoch``), a string must be ISO 8601 with a timezone (``iso8601``; Vector's ``timestamp``);
  without one, the request's arrival. ``event_id``: the id key's value when one is set and
  present (a string, or an integer written in decimal), else the SHA-256 of the record's
  canonical JSON (keys sorted), so a shipper that sends a request again sends the same ids.
  ``source``: the source key's value (default ``host``) when it is a string of 1 to 255
  characters, else ``ingest``.

All or nothing: the first record that cannot be an event is named (``line 3``, or ``element 3``
of an array, counted from 0 as ``/publish`` counts) and nothing of the request is published.
Empty lines are skipped. A JSON body that is not one JSON document is read as NDJSON, because
Fluent Bit before 3.0.4 sent ``json_lines`` as ``application/json``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from aggregator.decoding import event_from_fields, load_json, might_need_walk, payload_reason
from aggregator.errors import InvalidBody, InvalidRecord, TooManyEvents
from aggregator.events import Event, check_timestamp
from aggregator.logs import one_line
from aggregator.timestamps import from_unix_seconds

EVENT_FIELDS = frozenset({"topic", "event_id", "timestamp", "source", "payload"})
DEFAULT_SOURCE = "ingest"
MAX_SOURCE = 255
NDJSON_MEDIA_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonlines", "application/jsonl"}
)


@dataclass(frozen=True)
class Rules:
    """How records of one request become events."""

    topic: str
    time_key: str
    id_key: str | None
    source_key: str | None
    arrival: str  # the timestamp of a record without one
    max_batch: int
    max_event_bytes: int


def events_from_body(body: bytes, *, ndjson: bool, rules: Rules) -> list[Event]:
    """Every record of ``body`` as an event, or :class:`InvalidRecord` naming the first that
    cannot be one (:class:`EventTooLarge` for one over the size limit)."""
    events: list[Event] = []
    for where, record, walk in _ndjson(body) if ndjson else _json(body):
        if len(events) == rules.max_batch:  # counted on the way: lines of `{}` add up fast
            raise TooManyEvents(
                f"more than {rules.max_batch} records in one request; the limit is "
                f"{rules.max_batch} (AGG_MAX_BATCH)"
            )
        events.append(_event(record, where, walk, rules))
    if not events:
        raise InvalidBody("the body holds no records")
    return events


def _json(body: bytes) -> Iterator[tuple[str, Any, bool]]:
    try:
        document = load_json(body)
    except orjson.JSONDecodeError:
        yield from _ndjson(body)  # not one document: lines of them, or a line names the fault
        return
    walk = might_need_walk(body)
    if isinstance(document, list):
        for index, record in enumerate(document):
            yield f"element {index}", record, walk
    else:
        yield "line 1", document, walk


def _ndjson(body: bytes) -> Iterator[tuple[str, Any, bool]]:
    for number, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = load_json(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord(one_line(f"{where}: not valid JSON: {exc}")) from None
        yield where, record, might_need_walk(line)


def _event(record: Any, where: str, walk: bool, rules: Rules) -> Event:
    if not isinstance(record, dict):
        kind = "array" if isinstance(record, list) else type(record).__name__
        raise InvalidRecord(f"{where}: a record must be a JSON object, not {kind}")
    if record.keys() == EVENT_FIELDS:
        if record["topic"] != rules.topic:
            raise InvalidRecord(
                one_line(
                    f"{where}: an event of topic {str(record['topic'])[:255]!r} sent to the "
                    f"path of topic {rules.topic!r}"
                )
            )
        fields = record
    else:
        if walk:
            # Before the hash: a record the walk refuses may not even be encodable.
            problem = payload_reason(record)
            if problem is not None:
                raise InvalidRecord(f"{where}: {problem}")
            walk = False
        fields = {
            "topic": rules.topic,
            "event_id": _event_id(record, where, rules.id_key),
            "timestamp": _timestamp(record, where, rules),
            "source": _source(record, rules.source_key),
            "payload": record,
        }
    return event_from_fields(fields, max_event_bytes=rules.max_event_bytes, walk=walk, where=where)


def _event_id(record: dict[str, Any], where: str, key: str | None) -> str:
    if key is not None and key in record:
        value = record[key]
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise InvalidRecord(f"{where}: the id field {key!r} must be a string or an integer")
    return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _timestamp(record: dict[str, Any], where: str, rules: Rules) -> str:
    value = record.get(rules.time_key)
    if value is None:
        return rules.arrival
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return from_unix_seconds(value)
        if isinstance(value, str):
            return check_timestamp(value)
    except ValueError as exc:
        raise InvalidRecord(
            one_line(f"{where}: the time field {rules.time_key!r}: {exc}")
        ) from None
    raise InvalidRecord(
        f"{where}: the time field {rules.time_key!r} must be seconds since 1970 or an ISO 8601"
        " string with a timezone"
    )


def _source(record: dict[str, Any], key: str | None) -> str:
    if key is not None:
        value = record.get(key)
        if isinstance(value, str) and 0 < len(value) <= MAX_SOURCE:
            return value
    return DEFAULT_SOURCE
