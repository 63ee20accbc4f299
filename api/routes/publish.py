"""``POST /publish``: events in, confirmed by the broker, or refused whole.

The route reads what it needs from the app's state rather than through FastAPI dependencies:
this is the single-event path most services use, and each dependency costs every request
measurable time (``make bench`` compares it with a bare gateway).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aggregator.decoding import parse_request_body
from aggregator.settings import Settings
from api.body import JSON_MEDIA_TYPE, read_body, require_json
from api.deps import SECURITY, authenticate
from api.examples import publish_responses
from api.publishing import publish_events
from api.schemas import EVENT_EXAMPLE, SECOND_EVENT_EXAMPLE, Accepted


def publish_router(settings: Settings, body_schema: dict[str, Any]) -> APIRouter:
    router = APIRouter(tags=["publish"])

    @router.post(
        "/publish",
        status_code=202,
        response_model=Accepted,
        summary='Publish one event, an array of events, or {"events": [...]}',
        description=(
            "Answers 202 only once the broker confirmed every event. Validation is all or "
            "nothing: if any event is invalid, none is published. At most "
            f"{settings.max_batch} events and {settings.max_body_bytes} bytes per request "
            "(decompressed: `Content-Encoding: gzip` is accepted). "
            "Safe to retry: an event already stored is a duplicate, whatever its payload."
        ),
        openapi_extra={
            "security": SECURITY,
            "requestBody": {
                "required": True,
                "description": "JSON (`application/json` or any `application/*+json`)",
                "content": {
                    JSON_MEDIA_TYPE: {
                        "schema": body_schema,
                        "examples": {
                            "one_event": {"value": EVENT_EXAMPLE},
                            "array": {"value": [EVENT_EXAMPLE, SECOND_EVENT_EXAMPLE]},
                            "envelope": {"value": {"events": [EVENT_EXAMPLE]}},
                        },
                    }
                },
            },
        },
        responses=publish_responses(settings),
    )
    async def publish(request: Request) -> Response:
        settings: Settings = request.app.state.settings
        caller = authenticate(request, "publish")
        require_json(request)
        body = await read_body(
            request, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s
        )
        events = parse_request_body(
            body, max_batch=settings.max_batch, max_event_bytes=settings.max_event_bytes
        )
        await publish_events(request, caller, events)
        # The body by hand: FastAPI would validate and serialise it through the model again.
        return Response(
            b'{"accepted":%d}' % len(events), status_code=202, media_type=JSON_MEDIA_TYPE
        )

    return router
