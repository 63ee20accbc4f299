"""``POST /v1/logs``: OpenTelemetry logs over OTLP/HTTP, binary protobuf or OTLP/JSON.

Answers follow the OTLP specification, so an exporter does the right thing with each: 200 with
an ``ExportLogsServiceResponse`` (records that cannot become events counted in
``partial_success``, the rest published); 400 for bad data; 413 past the limits; 429 and 503
with ``Retry-After``, the only answers an exporter retries; every failure body a
``google.rpc.Status`` in the request's encoding. A retried batch is safe: each record's event id
is a hash of its content (:mod:`aggregator.otlp`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from aggregator import timestamps
from aggregator.errors import TooManyEvents
from aggregator.logs import one_line
from aggregator.metrics import ApiMetrics
from aggregator.otlp import count_records, map_request
from aggregator.otlp_wire import JSON, MEDIA_TYPES, decode_request, encode_response, encode_status
from aggregator.settings import Settings
from api.body import media_type, read_body
from api.deps import Publishing, SettingsDep
from api.errors import UnsupportedMediaType
from api.examples_ingest import otlp_request_body, otlp_responses
from api.publishing import publish_events

log = logging.getLogger(__name__)

PATH = "/v1/logs"


def _answer_media(request: Request) -> str:
    """The encoding of every answer: the request's, or JSON when it has none of OTLP's."""
    media = media_type(request)
    return media if media in MEDIA_TYPES else JSON


class OtlpRoute(APIRoute):
    """A route whose refusals are OTLP failures: a ``Status`` in the request's encoding."""

    @staticmethod
    def render_refusal(
        request: Request, status: int, detail: str, headers: dict[str, str]
    ) -> Response:
        media = _answer_media(request)
        body = encode_status(media, status, detail)
        return Response(body, status_code=status, headers=headers, media_type=media)


def otlp_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"], route_class=OtlpRoute)

    @router.post(
        PATH,
        response_class=Response,
        summary="OpenTelemetry logs (OTLP/HTTP): one event per log record",
        description=(
            "Point an OTLP/HTTP log exporter here (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`). Each "
            "record becomes an event: topic from the resource's `service.name`, event id a "
            "hash of the record's content, so a batch the exporter sends again is stored once. "
            f"At most {settings.max_batch} records and {settings.max_body_bytes} bytes "
            "(decompressed) per request."
        ),
        openapi_extra={"requestBody": otlp_request_body()},
        responses=otlp_responses(settings),
    )
    async def export_logs(request: Request, caller: Publishing, settings: SettingsDep) -> Response:
        media = media_type(request)
        if media not in MEDIA_TYPES:
            raise UnsupportedMediaType(
                "content-type must be application/x-protobuf or application/json (OTLP/HTTP)"
            )
        arrival = timestamps.arrival()
        body = await read_body(
            request, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s
        )
        export = decode_request(body, media)
        records = count_records(export)
        if records > settings.max_batch:
            raise TooManyEvents(
                f"{records} log records in one request; the limit is {settings.max_batch}"
            )
        mapped = map_request(export, arrival=arrival, max_event_bytes=settings.max_event_bytes)
        await publish_events(request, caller, mapped.events)
        if mapped.rejected:
            metrics: ApiMetrics = request.app.state.metrics
            metrics.records_refused.inc(mapped.rejected)
            log.warning("OTLP: %s", one_line(mapped.error_message))
        return Response(
            encode_response(media, mapped.rejected, mapped.error_message), media_type=media
        )

    return router
