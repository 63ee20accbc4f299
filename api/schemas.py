"""Bodies of the HTTP API, declared so the OpenAPI document says what each call takes and returns.

The models here only describe; the API answers with them or builds the same shapes directly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aggregator.events import Event, EventFields

_REF_TEMPLATE = "#/components/schemas/{model}"

EVENT_EXAMPLE: dict[str, Any] = Event.model_json_schema()["examples"][0]
SECOND_EVENT_EXAMPLE: dict[str, Any] = {
    **EVENT_EXAMPLE,
    "topic": "orders.created",
    "event_id": "order-1042",
    "timestamp": "2026-11-24T11:00:00.250+01:00",
    "payload": {},
}


def _ref(model: str) -> dict[str, str]:
    return {"$ref": _REF_TEMPLATE.format(model=model)}


def publish_body_schemas(max_batch: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of a ``POST /publish`` body, and the component schemas it refers to.

    ``/publish`` reads its body itself (to refuse a large one early, and to validate a batch all
    or nothing), so FastAPI does not see these models; the app adds them to its document.
    """
    event = Event.model_json_schema(ref_template=_REF_TEMPLATE)
    components: dict[str, Any] = event.pop("$defs", {})
    components["Event"] = event
    components["EventBatch"] = {
        "title": "EventBatch",
        "description": f"1 to {max_batch} events, published all or none",
        "type": "array",
        "items": _ref("Event"),
        "minItems": 1,
        "maxItems": max_batch,
        "examples": [[EVENT_EXAMPLE, SECOND_EVENT_EXAMPLE]],
    }
    components["EventEnvelope"] = {
        "title": "EventEnvelope",
        "type": "object",
        "properties": {"events": _ref("EventBatch")},
        "required": ["events"],
        "additionalProperties": False,
        "examples": [{"events": [EVENT_EXAMPLE]}],
    }
    body = {"oneOf": [_ref("Event"), _ref("EventBatch"), _ref("EventEnvelope")]}
    return body, components


class Accepted(BaseModel):
    accepted: int = Field(ge=1, description="events the broker confirmed", examples=[3])


class Problem(BaseModel):
    """An error the API found itself: one line saying what is wrong."""

    detail: str = Field(examples=["the broker confirmed 2 of 3 event(s), then none for 4s"])


class FieldError(BaseModel):
    """One validation error, in FastAPI's shape: where (``loc``), what (``msg``) and its kind."""

    # FastAPI adds the input and a context to the errors it finds in query parameters.
    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(examples=[["body", 1, "timestamp"]])
    msg: str = Field(examples=["Value error, timestamp must include a timezone"])
    type: str = Field(examples=["value_error"])
    input: Any = Field(default=None, description="the value refused (query parameters only)")
    ctx: dict[str, Any] = Field(
        default_factory=dict, description="the rule broken (query parameters only)"
    )


class ValidationProblem(BaseModel):
    """FastAPI's 422 body: every error found, nothing published or read."""

    detail: list[FieldError] = Field(min_length=1)


class StoredEventOut(EventFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EVENT_EXAMPLE,
                    "processed_at": "2026-11-24T10:00:00.123456Z",
                    "publisher": "billing-service",
                }
            ]
        }
    )

    processed_at: str = Field(
        description="when the worker stored it (UTC, ISO 8601)",
        examples=["2026-11-24T10:00:00.123456Z"],
    )
    # Not required in the schema: FastAPI drops null values from the document's examples.
    publisher: str | None = Field(
        default=None,
        description="the name of the API key that published it; null without keys, or when it"
        " came over AMQP directly",
        examples=["billing-service"],
    )


class EventsPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            **EVENT_EXAMPLE,
                            "processed_at": "2026-11-24T10:00:00.123456Z",
                            "publisher": None,
                        }
                    ],
                    "next": "cG9zOjA6MQ",
                }
            ]
        }
    )

    events: list[StoredEventOut] = Field(
        description="stored events, in processing order (`order=desc`: newest first)"
    )
    next: str | None = Field(
        description="the `after` cursor of the following page; null exactly when none follows"
    )


class StatsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "received": 5,
                    "unique_processed": 4,
                    "duplicate_dropped": 1,
                    "dead_lettered": 0,
                    "topics": {"auth.login": 3, "orders.created": 1},
                    "expired": 1,
                    "stored_events": 3,
                    "store_bytes": 4198400,
                    "uptime_s": 12.345,
                }
            ]
        }
    )

    received: int = Field(ge=0, description="deliveries of valid events the worker handled")
    unique_processed: int = Field(ge=0, description="events stored (first delivery of each)")
    duplicate_dropped: int = Field(
        ge=0, description="deliveries whose (topic, event_id) was stored"
    )
    dead_lettered: int = Field(ge=0, description="poison messages moved to the dead-letter queue")
    topics: dict[str, int] = Field(
        description="events stored per topic, ever (like unique_processed, retention does not"
        " take them off)"
    )
    expired: int = Field(ge=0, description="events deleted by retention (AGG_RETENTION)")
    stored_events: int = Field(
        ge=0, description="events the store holds now: unique_processed - expired"
    )
    store_bytes: int = Field(
        ge=0,
        description="the store's size on disk: the SQLite file (pages freed by retention stay"
        " in it, reused), or PostgreSQL's tables with their indexes",
    )
    uptime_s: float = Field(ge=0, description="seconds since this API process started")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"broker": "ok", "store": "ok"}]})

    broker: str = Field(description='"ok", or "unavailable" while not connected')
    store: str = Field(description='"ok", or "unavailable: <why>"')


class DeadLetterOut(BaseModel):
    routing_key: str = Field(description="the topic it was published to", examples=["app.log"])
    reason: str = Field(
        description="why: the worker's x-error, or RabbitMQ's x-death reason",
        examples=["body is not valid JSON: unexpected character: line 1 column 1 (char 0)"],
    )
    deaths: int = Field(ge=1, description="how many times it was dead-lettered", examples=[1])
    message_id: str | None = Field(default=None, examples=["order-1042"])
    body: str = Field(description="the message as UTF-8 text", examples=["not json"])


class DeadLetters(BaseModel):
    count: int = Field(ge=0, description="messages in the dead-letter queue", examples=[3])
    dead_letters: list[DeadLetterOut] = Field(description="the first of them, oldest first")


class Replayed(BaseModel):
    replayed: int = Field(ge=0, description="messages moved back to the exchange", examples=[3])
    left: int = Field(ge=0, description="messages still in the dead-letter queue", examples=[0])


class HistorySample(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: float = Field(description="seconds since the epoch", examples=[1764583200.0])
    received: int = Field(ge=0, examples=[1200])
    unique_processed: int = Field(ge=0, examples=[1000])
    duplicate_dropped: int = Field(ge=0, examples=[200])
    dead_lettered: int = Field(ge=0, examples=[0])


class History(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    samples: list[HistorySample] = Field(
        description="oldest first, one every AGG_METRICS_INTERVAL_S (5 s), the last 15 minutes"
    )
