"""The query parameters of ``GET /events`` as a store query: what FastAPI cannot check by type.

Times must name an instant (an offset is required, as in events); ``q`` must be searchable;
the cursor must be one the API issued. Each refusal is a 422 naming its parameter, and all of
them are reported at once.
"""

from __future__ import annotations

import re
from typing import Literal

from aggregator.store import EventQuery, Position
from aggregator.store.search import SearchSyntaxError, parse
from aggregator.timestamps import utc_micros
from api.cursor import decode_cursor
from api.errors import BadQuery

Order = Literal["asc", "desc"]

# A "+" in a URL query is a space: "...T10:00:00+02:00" sent unencoded arrives as
# "...T10:00:00 02:00". That space can only have been a plus.
_OFFSET_AS_SPACE = re.compile(r"^(.*\d) (\d\d(?::?\d\d)?)$")

TIME_HELP = (
    "must be an ISO 8601 date and time with a timezone, e.g. 2026-11-24T10:00:00Z or"
    " 2026-11-24T11:00:00%2B01:00 (a + in a URL must be written %2B)"
)


def event_query(
    *,
    topic: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    order: Order,
    after: str | None,
) -> tuple[EventQuery, Position | None]:
    """The store query and the position to page on from; BadQuery naming every parameter that
    is wrong."""
    errors: list[BadQuery] = []
    for name, value in (("topic", topic), ("source", source), ("q", q)):
        if value is not None and "\x00" in value:
            # No store can hold one in what it compares with (PostgreSQL's text refuses it).
            errors.append(BadQuery(name, "must not contain a NUL character", "string_nul"))
    since_us = _instant("since", since, errors)
    until_us = _instant("until", until, errors)
    if since_us is not None and until_us is not None and until_us <= since_us:
        errors.append(BadQuery("until", "must be later than since", "range", input_=until))
    if q is not None and "\x00" not in q:
        try:
            parse(q)
        except SearchSyntaxError as exc:
            errors.append(BadQuery("q", str(exc), "search", input_=q))
    start = None if after is None else decode_cursor(after)
    if after is not None and start is None:
        errors.append(BadQuery("after", "not a valid cursor", "cursor", input_=after))
    _raise(errors)
    query = EventQuery(
        topic=topic,
        source=source,
        since_us=since_us,
        until_us=until_us,
        text=q,
        newest_first=order == "desc",
    )
    return query, start


def _instant(parameter: str, text: str | None, errors: list[BadQuery]) -> int | None:
    if text is None:
        return None
    for candidate in (text, _OFFSET_AS_SPACE.sub(r"\1+\2", text)):
        try:
            return utc_micros(candidate)
        except ValueError:
            continue
    errors.append(BadQuery(parameter, TIME_HELP, "datetime", input_=text))
    return None


def _raise(errors: list[BadQuery]) -> None:
    if errors:
        first, *others = errors
        for other in others:
            first.also(other)
        raise first
