"""The FastAPI application: ``create_app(settings)`` wires the publisher and the store in."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aggregator.decoding import parse_request_body
from aggregator.errors import (
    BrokerUnavailable,
    EventTooLarge,
    InvalidBody,
    InvalidEvents,
    StoreUnavailable,
    TooManyEvents,
)
from aggregator.metrics import ApiMetrics
from aggregator.settings import Settings
from aggregator.store import START, DedupStore, Position, open_store
from aggregator.tasks import stop_task
from api.publisher import Publisher
from api.schemas import (
    EVENT_EXAMPLE,
    SECOND_EVENT_EXAMPLE,
    Accepted,
    EventsPage,
    Health,
    Problem,
    Readiness,
    StatsOut,
    ValidationProblem,
    publish_body_schemas,
)

RETRY_AFTER_S = "2"
JSON_MEDIA_TYPE = "application/json"


class _BodyTooLarge(Exception):
    pass


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        publisher = Publisher(settings)
        publisher.start()
        gauges = asyncio.create_task(
            metrics.queues.refresh_forever(settings, settings.metrics_interval_s)
        )
        app.state.store, app.state.publisher = store, publisher
        try:
            yield
        finally:
            await stop_task(gauges)
            await publisher.close()
            await store.close()

    metrics = ApiMetrics()

    app = FastAPI(
        title="Pub-Sub Log Aggregator",
        version="0.1.0",
        summary="Publish log events over HTTP; each is stored exactly once.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.started = time.monotonic()
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    publish_body, publish_components = publish_body_schemas(settings.max_batch)
    _add_routes(app, settings, publish_body)
    app.openapi = _with_components(app.openapi, publish_components)  # type: ignore[method-assign]
    return app


def _with_components(
    generate: Callable[[], dict[str, Any]], components: dict[str, Any]
) -> Callable[[], dict[str, Any]]:
    """``generate`` (FastAPI's cached ``openapi()``) with ``components`` added to its schemas.

    FastAPI documents only the models it validates itself; /publish's body refers to others.
    """

    def openapi() -> dict[str, Any]:
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {}).update(components)
        return document

    return openapi


def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


def _store(request: Request) -> DedupStore:
    store: DedupStore = request.app.state.store
    return store


def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PublisherDep = Annotated[Publisher, Depends(_publisher)]
StoreDep = Annotated[DedupStore, Depends(_store)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]


def _json_examples(**examples: Any) -> dict[str, Any]:
    """A response's ``content`` with named examples (FastAPI adds the model's schema)."""
    return {
        JSON_MEDIA_TYPE: {"examples": {name: {"value": value} for name, value in examples.items()}}
    }


def _field_error(loc: list[str | int], msg: str, type_: str, **extra: Any) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_, **extra}


_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before retrying the same request (the dedup makes it safe)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "examples": [int(RETRY_AFTER_S)]},
    }
}


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return _problem(503, f"the store is unavailable: {exc}", {"Retry-After": RETRY_AFTER_S})


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


# Each half of a position is a 64-bit row number or transaction id; larger is not a cursor
# (it would fail the query, a 500, rather than be a bad request).
_MAX_POSITION_PART = 2**63 - 1


def _encode_cursor(position: Position) -> str:
    tx, seq = position
    return base64.urlsafe_b64encode(f"pos:{tx}:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Position | None:
    """The position a cursor carries: ``pos:TX:SEQ``, or ``seq:N`` as issued before (0, N)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, rest = text.partition(":")
    if prefix == "seq":
        seq = _position_part(rest)
        return None if seq is None else (0, seq)
    if prefix == "pos":
        tx_text, _, seq_text = rest.partition(":")
        tx, seq = _position_part(tx_text), _position_part(seq_text)
        return None if tx is None or seq is None else (tx, seq)
    return None


def _position_part(number: str) -> int | None:
    # ASCII digits only (str.isdigit() also takes "²", which int() refuses), and few enough
    # for int() (it refuses thousands).
    if not (number.isascii() and number.isdigit()) or len(number) > 19:
        return None
    value = int(number)
    return value if value <= _MAX_POSITION_PART else None


def _add_routes(app: FastAPI, settings: Settings, publish_body: dict[str, Any]) -> None:
    @app.post(
        "/publish",
        status_code=202,
        response_model=Accepted,
        summary='Publish one event, an array of events, or {"events": [...]}',
        description=(
            "Answers 202 only once the broker confirmed every event. Validation is all or "
            "nothing: if any event is invalid, none is published. At most "
            f"{settings.max_batch} events and {settings.max_body_bytes} bytes per request. "
            "Safe to retry: an event already stored is a duplicate, whatever its payload."
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "JSON (`application/json` or any `application/*+json`)",
                "content": {
                    JSON_MEDIA_TYPE: {
                        "schema": publish_body,
                        "examples": {
                            "one_event": {"value": EVENT_EXAMPLE},
                            "array": {"value": [EVENT_EXAMPLE, SECOND_EVENT_EXAMPLE]},
                            "envelope": {"value": {"events": [EVENT_EXAMPLE]}},
                        },
                    }
                },
            }
        },
        responses={
            202: {"content": _json_examples(accepted={"accepted": 2})},
            400: {
                "model": Problem,
                "description": "the body is not JSON",
                "content": _json_examples(
                    not_json={
                        "detail": "body is not valid JSON: unexpected character, expected a "
                        "string key: line 1 column 2 (char 1)"
                    }
                ),
            },
            413: {
                "model": Problem,
                "description": "too many events, or too large a body; nothing was published",
                "content": _json_examples(
                    too_many_events={
                        "detail": f"{settings.max_batch + 1} events in one request; "
                        f"the limit is {settings.max_batch}"
                    },
                    body_too_large={
                        "detail": f"the body is larger than {settings.max_body_bytes} bytes"
                    },
                ),
            },
            415: {
                "model": Problem,
                "description": "the content type is not JSON",
                "content": _json_examples(
                    not_json={"detail": "content-type must be application/json"}
                ),
            },
            422: {
                "model": ValidationProblem,
                "description": "an event is invalid, or the batch is empty; nothing was published",
                "content": _json_examples(
                    invalid_event={
                        "detail": [
                            _field_error(
                                ["body", "events", 1, "timestamp"],
                                "Value error, timestamp must include a timezone "
                                "(e.g. 'Z' or '+02:00')",
                                "value_error",
                            ),
                            _field_error(
                                ["body", "events", 3, "topic"],
                                "String should match pattern '^[A-Za-z0-9._-]+$'",
                                "string_pattern_mismatch",
                            ),
                        ]
                    },
                    empty_batch={
                        "detail": [_field_error(["body"], "the batch is empty", "too_short")]
                    },
                ),
            },
            503: {
                "model": Problem,
                "description": (
                    "the broker does not hold the events (unreachable, nack, unroutable, or no "
                    "confirm in time): retry after Retry-After seconds"
                ),
                "headers": _RETRY_AFTER_HEADER,
                "content": _json_examples(
                    not_connected={"detail": "not connected to the broker"},
                    no_confirm={
                        "detail": "the broker confirmed 2 of 3 event(s), then none for "
                        f"{settings.confirm_timeout_s:g}s"
                    },
                    unroutable={
                        "detail": "1 of 1 event(s) not confirmed: returned by the broker as "
                        "unroutable (no queue bound for the topic)"
                    },
                ),
            },
        },
    )
    async def publish(
        request: Request, publisher: PublisherDep, settings: SettingsDep, metrics: MetricsDep
    ) -> Accepted | JSONResponse:
        if not _is_json(request.headers.get("content-type")):
            metrics.rejected.labels("unsupported_media_type").inc()
            return _problem(415, "content-type must be application/json")
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            metrics.rejected.labels("too_large").inc()
            return _problem(413, f"the body is larger than {settings.max_body_bytes} bytes")
        try:
            events = parse_request_body(
                body, max_batch=settings.max_batch, max_event_bytes=settings.max_event_bytes
            )
        except InvalidBody as exc:
            metrics.rejected.labels("not_json").inc()
            return _problem(400, str(exc))
        except (TooManyEvents, EventTooLarge) as exc:
            metrics.rejected.labels("too_large").inc()
            return _problem(413, str(exc))
        except InvalidEvents as exc:
            metrics.rejected.labels("invalid").inc()
            return JSONResponse(status_code=422, content={"detail": exc.errors})
        started = time.perf_counter()
        try:
            await publisher.publish(events, on_handed=metrics.published.inc)
        except BrokerUnavailable as exc:
            metrics.rejected.labels(exc.reason).inc()
            return _problem(503, str(exc), headers={"Retry-After": RETRY_AFTER_S})
        metrics.confirm_seconds.observe(time.perf_counter() - started)
        metrics.confirmed.inc(len(events))
        return Accepted(accepted=len(events))

    @app.get(
        "/events",
        response_model=EventsPage,
        summary="Unique stored events in processing order",
        description="Each with its five fields as stored and `processed_at`; page with `next`.",
        responses={
            422: {
                "model": ValidationProblem,
                "description": "`limit` outside 1-1000 or not a number, or `after` not a cursor",
                "content": _json_examples(
                    limit_out_of_range={
                        "detail": [
                            _field_error(
                                ["query", "limit"],
                                "Input should be less than or equal to 1000",
                                "less_than_equal",
                                input="5000",
                                ctx={"le": 1000},
                            )
                        ]
                    },
                    not_a_cursor={
                        "detail": [_field_error(["query", "after"], "not a valid cursor", "cursor")]
                    },
                ),
            }
        },
    )
    async def events(
        store: StoreDep,
        topic: Annotated[
            str | None, Query(description="only events of this topic", examples=["auth.login"])
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=1000, description="most events in the page", examples=[100])
        ] = 100,
        after: Annotated[
            str | None,
            Query(
                description="opaque cursor: the `next` of the previous page",
                examples=["cG9zOjA6MQ"],
            ),
        ] = None,
    ) -> Response:
        position = START
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
            position = decoded
        page, more = await store.events_after(after=position, limit=limit, topic=topic)
        # Encoded straight from the stored JSON: no parse and re-encode of every payload, and
        # the page is bounded in bytes by the store.
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
                    }
                    for e in page
                ],
                "next": _encode_cursor(page[-1].position) if more and page else None,
            }
        )
        return Response(body, media_type=JSON_MEDIA_TYPE)

    @app.get(
        "/stats",
        response_model=StatsOut,
        summary="Counters (they survive restarts)",
        description="`received == unique_processed + duplicate_dropped` always.",
    )
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

    @app.get(
        "/healthz",
        response_model=Health,
        summary="200 while the process runs",
        responses={200: {"content": _json_examples(ok={"status": "ok"})}},
    )
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        summary="200 when the broker and the store answer",
        responses={
            200: {"content": _json_examples(ready={"broker": "ok", "store": "ok"})},
            503: {
                "model": Readiness,
                "description": "the broker or the store does not answer",
                "content": _json_examples(
                    broker_down={"broker": "unavailable", "store": "ok"},
                    store_down={
                        "broker": "ok",
                        "store": "unavailable: OperationalError('disk I/O error')",
                    },
                ),
            },
        },
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

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics of this API process",
        description=(
            "Events published, confirmed, requests rejected by reason, publish-confirm latency, "
            "and queue depth / consumer count read from the broker on a timer. The worker "
            "serves its own on AGG_METRICS_PORT."
        ),
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics_text(metrics: MetricsDep) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
