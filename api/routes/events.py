"""``GET /events`` (filter, order, page or export) and ``GET /events/{topic}/{event_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from api.body import JSON_MEDIA_TYPE
from api.cursor import encode_cursor
from api.deps import Reading, StoreDep
from api.errors import NotFound
from api.event_query import Order, event_query
from api.examples import EVENT_RESPONSES, EVENTS_RESPONSES
from api.export import export, wants_ndjson
from api.rendering import event_json, page_json
from api.schemas import EventsPage, StoredEventOut

router = APIRouter(tags=["read"])

_TIME = (
    "ISO 8601 with a timezone (`Z`, or an offset written `%2B01:00` in a URL, since a bare `+`"
    " is a space); compared as an instant with each event's own `timestamp`, whatever offset"
    " either was written with"
)
_SEARCH = (
    "full-text search over the payload (its keys and values) and the source. `timeout refused`:"
    ' both words; `"connection refused"`: the phrase; `timeout or refused`: either; `-debug`:'
    " without the word (beside a word to find). Whole words, any case; punctuation separates"
    " words."
)


@router.get(
    "/events",
    response_model=EventsPage,
    summary="Stored events: filter, order, page, or export them all",
    description="Each with its five fields as stored, `processed_at` and `publisher` (the API"
    " key's name, when keys are on). Filters combine. Page with `next`, in processing order"
    " (`order=desc`: newest first). With `Accept: application/x-ndjson`, every matching event"
    " instead of a page, one JSON object per line (`limit` does not apply). Unknown query"
    " parameters are refused.",
    responses=EVENTS_RESPONSES,
)
async def events(
    caller: Reading,
    store: StoreDep,
    request: Request,
    topic: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="only this topic", examples=["auth.login"]),
    ] = None,
    source: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="only this source", examples=["svc-a"]),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description=f"only events at or after this time: {_TIME}",
            examples=["2026-11-24T00:00:00Z"],
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description=f"only events before this time: {_TIME}",
            examples=["2026-11-25T00:00:00+01:00"],
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=500, description=_SEARCH, examples=["timeout -debug"]),
    ] = None,
    order: Annotated[
        Order,
        Query(
            description="`asc`: oldest first (processing order); `desc`: newest first",
            examples=["desc"],
        ),
    ] = "asc",
    limit: Annotated[
        int, Query(ge=1, le=1000, description="most events in the page", examples=[100])
    ] = 100,
    after: Annotated[
        str | None,
        Query(
            description="opaque cursor: the `next` of the previous page, same `order`",
            examples=["cG9zOjA6MTAw"],
        ),
    ] = None,
) -> Response:
    query, start = event_query(
        topic=topic, source=source, since=since, until=until, q=q, order=order, after=after
    )
    if wants_ndjson(request.headers.get("accept")):
        return await export(store, query, start)
    page, more = await store.events_after(query=query, after=start, limit=limit)
    # The page is bounded in bytes by the store (4 MiB of payloads), and encoded straight from
    # the stored JSON.
    next_cursor = encode_cursor(page[-1].position) if more and page else None
    return Response(page_json(page, next_cursor), media_type=JSON_MEDIA_TYPE)


@router.get(
    "/events/{topic}/{event_id:path}",
    response_model=StoredEventOut,
    summary="One stored event, by its identity",
    description="404 when no event of that topic and id is stored (never, or deleted by"
    " retention; its key still counts for dedup). An `event_id` with `/` or other reserved"
    " characters is percent-encoded.",
    responses=EVENT_RESPONSES,
)
async def event(
    caller: Reading,
    store: StoreDep,
    topic: Annotated[str, Path(description="the event's topic", examples=["auth.login"])],
    event_id: Annotated[
        str,
        Path(description="the event's id", examples=["6f1c2a9e-8d2b-4c1e-9f4e-2b7d1a0c5e11"]),
    ],
) -> Response:
    # A NUL is in no stored key (topics and ids refuse control characters), and PostgreSQL's
    # text refuses to compare with one.
    nul = "\x00" in topic or "\x00" in event_id
    stored = None if nul else await store.get_event(topic, event_id)
    if stored is None:
        raise NotFound(f"no event {event_id!r} of topic {topic!r} is stored")
    return Response(event_json(stored), media_type=JSON_MEDIA_TYPE)
