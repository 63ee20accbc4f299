"""The FastAPI application: ``create_app(settings)`` wires the publisher and the store in."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from aggregator.events import (
    Event,
    InvalidBody,
    InvalidEvents,
    TooManyEvents,
    parse_request_body,
)
from aggregator.settings import Settings
from aggregator.store import DedupStore
from api.publisher import BrokerUnavailable, Publisher
from api.schemas import (
    Accepted,
    EventsPage,
    Health,
    Problem,
    Readiness,
    StatsOut,
    ValidationProblem,
)

RETRY_AFTER_S = "2"
JSON_MEDIA_TYPE = "application/json"


class _BodyTooLarge(Exception):
    pass


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await DedupStore.open(
            settings.db_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        publisher = Publisher(settings)
        publisher.start()
        app.state.store, app.state.publisher = store, publisher
        try:
            yield
        finally:
            await publisher.close()
            await store.close()

    app = FastAPI(
        title="Pub-Sub Log Aggregator",
        version="0.1.0",
        summary="Publish log events over HTTP; each is stored exactly once.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started = time.monotonic()
    _add_routes(app)
    return app


def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


def _store(request: Request) -> DedupStore:
    store: DedupStore = request.app.state.store
    return store


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PublisherDep = Annotated[Publisher, Depends(_publisher)]
StoreDep = Annotated[DedupStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_PUBLISH_BODY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/Event"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1},
        {
            "type": "object",
            "properties": {
                "events": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Event"},
                    "minItems": 1,
                }
            },
            "required": ["events"],
            "additionalProperties": False,
        },
    ]
}


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise _BodyTooLarge
    return bytes(chunks)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "seq" or not number.isdigit():
        return None
    return int(number)


def _add_routes(app: FastAPI) -> None:
    @app.post(
        "/publish",
        status_code=202,
        response_model=Accepted,
        summary='Publish one event, an array of events, or {"events": [...]}',
        description=(
            "Answers 202 only once the broker confirmed every event. Validation is all or "
            "nothing: if any event is invalid, none is published."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON_MEDIA_TYPE: {"schema": _PUBLISH_BODY_SCHEMA}},
            }
        },
        responses={
            400: {"model": Problem, "description": "the body is not JSON"},
            413: {"model": Problem, "description": "too many events or too large a body"},
            415: {"model": Problem, "description": "the content type is not JSON"},
            422: {"model": ValidationProblem, "description": "an event is invalid"},
            503: {
                "model": Problem,
                "description": "the broker did not confirm; retry after Retry-After seconds",
            },
        },
    )
    async def publish(
        request: Request, publisher: PublisherDep, settings: SettingsDep
    ) -> Accepted | JSONResponse:
        if not _is_json(request.headers.get("content-type")):
            return _problem(415, "content-type must be application/json")
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            return _problem(413, f"the body is larger than {settings.max_body_bytes} bytes")
        try:
            events = parse_request_body(body, max_batch=settings.max_batch)
        except InvalidBody as exc:
            return _problem(400, str(exc))
        except TooManyEvents as exc:
            return _problem(413, str(exc))
        except InvalidEvents as exc:
            return JSONResponse(status_code=422, content={"detail": exc.errors})
        try:
            await publisher.publish(events)
        except BrokerUnavailable as exc:
            return _problem(503, str(exc), headers={"Retry-After": RETRY_AFTER_S})
        return Accepted(accepted=len(events))

    @app.get(
        "/events",
        response_model=EventsPage,
        summary="Unique stored events in processing order",
        responses={422: {"model": ValidationProblem, "description": "bad limit or cursor"}},
    )
    async def events(
        store: StoreDep,
        topic: Annotated[str | None, Query(description="only this topic")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
    ) -> EventsPage | JSONResponse:
        after_seq = 0
        if after is not None:
            decoded = _decode_cursor(after)
            if decoded is None:
                return JSONResponse(
                    status_code=422,
                    content={
                        "detail": [
                            {
                                "loc": ["query", "after"],
                                "msg": "not a valid cursor",
                                "type": "cursor",
                            }
                        ]
                    },
                )
            after_seq = decoded
        page, more = await store.events_after(after_seq=after_seq, limit=limit, topic=topic)
        return EventsPage.model_validate(
            {
                "events": [
                    {
                        "topic": e.topic,
                        "event_id": e.event_id,
                        "timestamp": e.timestamp,
                        "source": e.source,
                        "payload": e.payload,
                        "processed_at": e.processed_at,
                    }
                    for e in page
                ],
                "next": _encode_cursor(page[-1].seq) if more and page else None,
            }
        )

    @app.get("/stats", response_model=StatsOut, summary="Counters (they survive restarts)")
    async def stats(request: Request, store: StoreDep) -> StatsOut:
        current = await store.stats()
        return StatsOut(
            received=current.received,
            unique_processed=current.unique_processed,
            duplicate_dropped=current.duplicate_dropped,
            dead_lettered=current.dead_lettered,
            topics=current.topics,
            uptime_s=round(time.monotonic() - request.app.state.started, 3),
        )

    @app.get("/healthz", response_model=Health, summary="200 while the process runs")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        summary="200 when the broker and the store answer",
        responses={503: {"model": Readiness, "description": "the broker or the store is down"}},
    )
    async def readyz(publisher: PublisherDep, store: StoreDep) -> Readiness | JSONResponse:
        broker = "ok" if publisher.ready else "unavailable"
        try:
            await store.ping()
            store_state = "ok"
        except Exception as exc:  # any failure to answer is "not ready", and says why
            store_state = f"unavailable: {exc!r}"
        readiness = Readiness(broker=broker, store=store_state)
        if broker != "ok" or store_state != "ok":
            return JSONResponse(status_code=503, content=readiness.model_dump())
        return readiness


__all__ = ["Event", "create_app"]
