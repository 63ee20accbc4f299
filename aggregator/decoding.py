"""How bytes become events, for the API (a request body) and the worker (an AMQP body) alike.

Both sides decode the same way and refuse the same things, so what the API accepted is what the
worker stores, and what the worker would refuse the API refuses first:

* not JSON, or not UTF-8 (lone surrogates included);
* not an event: the schema of :class:`aggregator.events.Event`;
* a payload nested deeper than :data:`MAX_PAYLOAD_DEPTH` (orjson reads 1024 levels but writes
  254: anything accepted must be re-encodable);
* an integer outside 64 bits (orjson would read it as a float, silently changing it);
* an event whose canonical encoding is larger than ``AGG_MAX_EVENT_BYTES``.

Ingest formats (OTLP, NDJSON records) build each event's five fields themselves and hand them to
:func:`event_from_fields`, which applies these same checks to one event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from aggregator.errors import (
    EventTooLarge,
    InvalidBody,
    InvalidEvents,
    InvalidRecord,
    Poison,
    TooManyEvents,
)
from aggregator.events import Event
from aggregator.logs import one_line

# The payload object is level 1; its members' objects and arrays level 2, and so on.
MAX_PAYLOAD_DEPTH = 100
# What a 64-bit integer can hold, signed or unsigned: what orjson reads and writes exactly.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# Digits in a row that might be an integer outside 64 bits (-2**63 has 19). Rare in logs, so
# only a body containing such a run is read a second time, exactly.
_LONG_DIGITS = re.compile(rb"\d{19,}")

_EVENT_LIST: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


class _OutOfRange:
    """Stands in for an integer outside 64 bits, so the payload check can name it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _exact_int(text: str) -> int | _OutOfRange:
    # Compare lengths first: int() of thousands of digits is slow, and refused past 4,300.
    if len(text.lstrip("-")) > 20:
        return _OutOfRange(text)
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else _OutOfRange(text)


def load_json(body: bytes) -> Any:
    """The JSON document in ``body``, with integers outside 64 bits kept as markers.

    Raises ``orjson.JSONDecodeError`` for anything orjson refuses (it checks UTF-8 strictly).
    """
    document = orjson.loads(body)
    if _LONG_DIGITS.search(body) is not None:
        # orjson accepted the document, so the standard library reads the same structure;
        # only its integers differ, kept exact or marked.
        document = json.loads(body, parse_int=_exact_int)
    return document


def might_need_walk(body: bytes) -> bool:
    """Whether a payload in ``body`` could be too deep or hold an out-of-range integer."""
    nesting = body.count(b"{") + body.count(b"[")
    return nesting > MAX_PAYLOAD_DEPTH or _LONG_DIGITS.search(body) is not None


def payload_problem(payload: dict[str, Any]) -> tuple[list[str | int], str, str] | None:
    """The first thing in ``payload`` the store would not keep as sent: (path, message, type)."""
    return _problem(payload, 1)


def _problem(value: Any, depth: int) -> tuple[list[str | int], str, str] | None:
    # Recursion no deeper than MAX_PAYLOAD_DEPTH + 1, and no path built unless something is
    # wrong: a payload of a million small items costs no second copy of itself.
    if isinstance(value, _OutOfRange):
        digits = value.text if len(value.text) <= 30 else f"{value.text[:27]}..."
        return [], f"integer {digits} is outside 64 bits ({INT_MIN} to {INT_MAX})", "int_range"
    items: Any
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    if depth > MAX_PAYLOAD_DEPTH:
        return [], f"the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels", "depth"
    for key, item in items:
        if isinstance(item, dict | list | _OutOfRange):
            found = _problem(item, depth + 1)
            if found is not None:
                found[0].insert(0, key)
                return found
    return None


def _check_size(event: Event, max_event_bytes: int, index: int | None) -> None:
    size = len(event.wire)
    if size > max_event_bytes:
        where = "the event" if index is None else f"event {index}"
        raise EventTooLarge(
            f"{where} is {size} bytes as JSON; the limit is {max_event_bytes}"
            " (AGG_MAX_EVENT_BYTES)",
            index=index,
        )


def parse_request_body(body: bytes, *, max_batch: int, max_event_bytes: int) -> list[Event]:
    """Events from a ``POST /publish`` body: one event, a JSON array, or ``{"events": [...]}``.

    All or nothing: any invalid event raises :class:`InvalidEvents` naming each bad index and
    field; an event too large raises :class:`EventTooLarge` with its index.
    """
    try:
        document = load_json(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"body is not valid JSON: {exc}") from None

    prefix: tuple[str | int, ...]
    single = False
    if isinstance(document, list):
        items: Sequence[Any] = document
        prefix = ("body",)
    elif isinstance(document, dict) and "events" in document and "topic" not in document:
        if set(document) != {"events"} or not isinstance(document["events"], list):
            raise _envelope_error('an envelope must be exactly {"events": [...]}', "envelope")
        items = document["events"]
        prefix = ("body", "events")
    elif isinstance(document, dict):
        items, prefix, single = [document], ("body",), True
    else:
        raise _envelope_error(
            'expected an event, an array of events or {"events": [...]}', "model_type"
        )

    if not items:
        raise _envelope_error("the batch is empty", "too_short", list(prefix))
    if len(items) > max_batch:
        raise TooManyEvents(f"{len(items)} events in one request; the limit is {max_batch}")
    try:
        events = _EVENT_LIST.validate_python(items)
    except ValidationError as exc:
        raise InvalidEvents(_fastapi_errors(exc, prefix, single)) from None
    if might_need_walk(body):
        errors = []
        for index, event in enumerate(events):
            problem = payload_problem(event.payload)
            if problem is not None:
                path, msg, kind = problem
                at = [] if single else [index]
                errors.append({"loc": [*prefix, *at, "payload", *path], "msg": msg, "type": kind})
        if errors:
            raise InvalidEvents(errors)
    for index, event in enumerate(events):
        _check_size(event, max_event_bytes, None if single else index)
    return events


def _envelope_error(msg: str, type_: str, loc: list[str | int] | None = None) -> InvalidEvents:
    return InvalidEvents([{"loc": loc or ["body"], "msg": msg, "type": type_}])


def _fastapi_errors(
    exc: ValidationError, prefix: tuple[str | int, ...], single: bool
) -> list[dict[str, Any]]:
    return [
        {
            "loc": [*prefix, *(error["loc"][1:] if single else error["loc"])],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def decode_wire(body: bytes, *, max_event_bytes: int) -> Event:
    """The event in an AMQP body; raises :class:`Poison` with a one-line reason."""
    if len(body) > max_event_bytes:
        raise Poison(
            f"the body is {len(body)} bytes; the limit is {max_event_bytes} (AGG_MAX_EVENT_BYTES)"
        )
    try:
        document = load_json(body)
    except orjson.JSONDecodeError as exc:
        raise Poison(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Poison(f"body is JSON {type(document).__name__}, not an event object")
    try:
        event = Event.model_validate(document)
    except ValidationError as exc:
        raise Poison(one_line(f"not a valid event: {_reasons(exc)}")) from None
    if might_need_walk(body):
        problem = _payload_reason(event)
        if problem is not None:
            raise Poison(problem)
    try:
        _check_size(event, max_event_bytes, None)
    except EventTooLarge as exc:
        raise Poison(str(exc)) from None
    return event


def event_from_fields(
    fields: dict[str, Any], *, max_event_bytes: int, walk: bool = True, where: str = "the record"
) -> Event:
    """The event an ingest format built, checked as every event is (schema, payload, size).

    ``walk=False`` skips the payload walk where the caller knows its source cannot hold what
    it finds (see :func:`might_need_walk`). Raises :class:`InvalidRecord` or
    :class:`EventTooLarge`, their one-line message starting with ``where``.
    """
    try:
        event = Event.model_validate(fields)
    except ValidationError as exc:
        raise InvalidRecord(one_line(f"{where}: {_reasons(exc)}")) from None
    if walk:
        problem = _payload_reason(event)
        if problem is not None:
            raise InvalidRecord(one_line(f"{where}: {problem}"))
    size = len(event.wire)
    if size > max_event_bytes:
        raise EventTooLarge(
            f"{where} is {size} bytes as an event; the limit is {max_event_bytes}"
            " (AGG_MAX_EVENT_BYTES)"
        )
    return event


def _reasons(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def _payload_reason(event: Event) -> str | None:
    return payload_reason(event.payload)


def payload_reason(payload: dict[str, Any]) -> str | None:
    """:func:`payload_problem` as one line (``payload.path: what``), or None."""
    problem = payload_problem(payload)
    if problem is None:
        return None
    path, msg, _ = problem
    return one_line(f"{'.'.join(str(part) for part in ['payload', *path])}: {msg}")
