"""``GET /events`` and ``GET /stats``: what the store holds."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from aggregator.store import START, EventQuery
from api.body import JSON_MEDIA_TYPE
from api.cursor import decode_cursor, encode_cursor
from api.deps import Reading, StoreDep
from api.errors import BadQuery
from api.examples import AUTH_RESPONSES, EVENTS_RESPONSES
from api.schemas import EventsPage, StatsOut

router = APIRouter(tags=["read"])


@router.get(
    "/events",
    response_model=EventsPage,
    summary="Unique stored events in processing order",
    description="Each with its five fields as stored, `processed_at` and `publisher` (the API"
    " key's name, when keys are on); page with `next`.",
    responses=EVENTS_RESPONSES,
)
async def events(
    caller: Reading,
    store: StoreDep,
    topic: Annotated[
        str | None, Query(description="only events of this topic", examples=["auth.login"])
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="most events in the page", examples=[100])
    ] = 100,
    after: Annotated[
        str | None,
        Query(description="opaque cursor: the `next` of the previous page"),
    ] = None,
) -> Response:
    position = START
    if after is not None:
        decoded = decode_cursor(after)
        if decoded is None:
            raise BadQuery("after", "not a valid cursor", "cursor")
        position = decoded
    page, more = await store.events_after(
        query=EventQuery(topic=topic), after=position, limit=limit
    )
    # Encoded straight from the stored JSON: no parse and re-encode of every payload, and the
    # page is bounded in bytes by the store.
    body = orjson.dumps(
        {
            "events": [
                {
                    "topic": e.topic,
                    "event_id": e.event_id,
                    "timestamp": e.timestamp,
                    "source": e.source,
                    "payload": orjson.Fragment(e.payload_json),
                    "processed_at": e.processed_at,
                    "publisher": e.publisher,
                }
                for e in page
            ],
            "next": encode_cursor(page[-1].position) if more and page else None,
        }
    )
    return Response(body, media_type=JSON_MEDIA_TYPE)


@router.get(
    "/stats",
    response_model=StatsOut,
    summary="Counters (they survive restarts)",
    description="`received == unique_processed + duplicate_dropped` always.",
    responses=AUTH_RESPONSES,
)
async def stats(caller: Reading, request: Request, store: StoreDep) -> StatsOut:
    current = await store.stats()
    return StatsOut(
        received=current.received,
        unique_processed=current.unique_processed,
        duplicate_dropped=current.duplicate_dropped,
        dead_lettered=current.dead_lettered,
        topics=current.topics,
        uptime_s=round(time.monotonic() - request.app.state.started, 3),
    )
