"""``GET /events`` with ``Accept: application/x-ndjson``: every matching event, one per line.

Not one page: the store is read a page at a time under the hood and each page written out
before the next is read, so memory stays at one page (1,000 events, about 4 MiB of payloads)
however large the export. An export ascending stops at the newest event that matched when it
began, so a busy topic cannot keep it going forever; descending, it starts there by itself. The
first page is read before the answer starts, so a store that is down is a 503, not an empty
200; a failure later can only cut the stream short (the connection is closed without the
chunked body's end, which clients report as an incomplete transfer), and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi.responses import Response, StreamingResponse

from aggregator.errors import StoreError
from aggregator.store import DedupStore, EventQuery, Position, StoredEvent
from api.rendering import ndjson_lines

log = logging.getLogger(__name__)

NDJSON_MEDIA_TYPE = "application/x-ndjson"
EXPORT_PAGE = 1000

_JSON_RANGES = ("application/json", "application/*", "*/*")


def wants_ndjson(accept: str | None) -> bool:
    """Whether the Accept header prefers NDJSON to JSON (at equal quality, NDJSON: it was named)."""
    ndjson, json = 0.0, 0.0
    for media_range in (accept or "").split(","):
        media_type, _, parameters = media_range.partition(";")
        media_type = media_type.strip().lower()
        quality = _quality(parameters)
        if media_type == NDJSON_MEDIA_TYPE:
            ndjson = max(ndjson, quality)
        elif media_type in _JSON_RANGES:
            json = max(json, quality)
    return ndjson > 0 and ndjson >= json


async def export(store: DedupStore, query: EventQuery, after: Position | None) -> Response:
    """The streaming answer; the store's first page is read before it starts."""
    last: Position | None = None
    if not query.newest_first:
        newest, _ = await store.events_after(query=replace(query, newest_first=True), limit=1)
        if not newest:
            return Response(b"", media_type=NDJSON_MEDIA_TYPE)
        last = newest[0].position
    page, more = await store.events_after(query=query, after=after, limit=EXPORT_PAGE)
    return StreamingResponse(_lines(store, query, page, more, last), media_type=NDJSON_MEDIA_TYPE)


async def _lines(
    store: DedupStore,
    query: EventQuery,
    page: list[StoredEvent],
    more: bool,
    last: Position | None,
) -> AsyncIterator[bytes]:
    sent = 0
    try:
        while True:
            if last is not None and page and page[-1].position >= last:
                page, more = [e for e in page if e.position <= last], False
            if page:
                yield ndjson_lines(page)
                sent += len(page)
            if not more or not page:
                return
            page, more = await store.events_after(
                query=query, after=page[-1].position, limit=EXPORT_PAGE
            )
    except StoreError as exc:
        log.warning("export cut short after %d events: %s", sent, exc)
        raise


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0
    return 1.0
