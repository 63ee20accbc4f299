"""Response bodies of the HTTP API, declared so the OpenAPI document says what each call returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from aggregator.events import Event


class Accepted(BaseModel):
    accepted: int = Field(description="events the broker confirmed", examples=[3])


class Problem(BaseModel):
    detail: str = Field(examples=["the broker did not confirm 3 event(s) within 4s"])


class ValidationProblem(BaseModel):
    detail: list[dict[str, Any]] = Field(
        examples=[
            [
                {
                    "loc": ["body", 1, "timestamp"],
                    "msg": "Value error, timestamp must include a timezone",
                    "type": "value_error",
                }
            ]
        ]
    )


class StoredEventOut(Event):
    processed_at: str = Field(description="when the worker stored it (UTC, ISO 8601)")


class EventsPage(BaseModel):
    events: list[StoredEventOut]
    next: str | None = Field(description="cursor for the following page; null when none follows")


class StatsOut(BaseModel):
    received: int = Field(description="deliveries of valid events the worker handled")
    unique_processed: int = Field(description="events stored (first delivery of each identity)")
    duplicate_dropped: int = Field(description="deliveries whose (topic, event_id) was stored")
    dead_lettered: int = Field(description="poison messages moved to the dead-letter queue")
    topics: dict[str, int] = Field(description="unique events per topic")
    uptime_s: float = Field(description="seconds since this API process started")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    broker: str = Field(examples=["ok"])
    store: str = Field(examples=["ok"])
