"""``POST /ingest/{topic}``: any JSON records, NDJSON or an array, as events of one topic.

For log shippers that send records as they are (Fluent Bit's http output, Vector's http sink):
each record is wrapped as an event's payload, its timestamp, id and source taken from fields
named by the settings or the query (:mod:`aggregator.records`). All or nothing, like
``/publish``; a request sent again publishes the same ids, so the store keeps one of each.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from aggregator import timestamps
from aggregator.records import NDJSON_MEDIA_TYPES, Rules, events_from_body
from aggregator.settings import Settings
from api.body import is_json, media_type, read_body
from api.deps import Publishing, SettingsDep
from api.errors import UnsupportedMediaType
from api.examples_ingest import ingest_request_body, ingest_responses
from api.publishing import publish_events
from api.schemas import Accepted

# A topic as an event has it, less "." and "..": no URL can carry those as a path segment
# (clients resolve them as dot segments before sending).
TOPIC_IN_PATH = (
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9._-]+))$"
)


TopicInPath = Annotated[
    str,
    Path(
        max_length=255,
        pattern=TOPIC_IN_PATH,
        description="the topic of every event of the request",
        examples=["app.log"],
    ),
]
TimeKey = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=255,
        description="the field holding a record's time (default: AGG_INGEST_TIME_KEY, `date`)",
    ),
]
IdKey = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=255,
        description="the field holding a record's id (default: AGG_INGEST_ID_KEY, unset: a"
        " hash of the record)",
    ),
]
SourceKey = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=255,
        description="the field naming a record's source (default: AGG_INGEST_SOURCE_KEY,"
        " `host`; without it, `ingest`)",
    ),
]


def ingest_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/ingest/{topic}",
        status_code=202,
        response_model=Accepted,
        summary="Any JSON records (NDJSON or an array) as events of one topic",
        description=(
            "Each record becomes an event of the path's topic: the record itself is the "
            "payload; the timestamp from the time field (seconds since 1970, or ISO 8601), "
            "else the arrival; the event id from the id field, else a hash of the record, so "
            "a request sent again is stored once. A record with exactly the five event fields "
            "is taken as the event it is. All or nothing: the first record refused is named "
            f"and none is published. At most {settings.max_batch} records and "
            f"{settings.max_body_bytes} bytes (decompressed: gzip is accepted)."
        ),
        openapi_extra={"requestBody": ingest_request_body(settings)},
        responses=ingest_responses(settings),
    )
    async def ingest(
        request: Request,
        caller: Publishing,
        settings: SettingsDep,
        topic: TopicInPath,
        time_key: TimeKey = None,
        id_key: IdKey = None,
        source_key: SourceKey = None,
    ) -> Accepted:
        media = media_type(request)
        ndjson = media in NDJSON_MEDIA_TYPES
        if not ndjson and not is_json(media):
            raise UnsupportedMediaType(
                "content-type must be application/x-ndjson or application/json"
            )
        caller.check_topics([topic])  # before reading a body that could not be published
        arrival = timestamps.arrival()
        body = await read_body(
            request, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s
        )
        rules = Rules(
            topic=topic,
            time_key=time_key or settings.ingest_time_key,
            id_key=id_key or settings.ingest_id_key,
            source_key=source_key or settings.ingest_source_key,
            arrival=arrival,
            max_batch=settings.max_batch,
            max_event_bytes=settings.max_event_bytes,
        )
        events = events_from_body(body, ndjson=ndjson, rules=rules)
        await publish_events(request, caller, events)
        return Accepted(accepted=len(events))

    return router
