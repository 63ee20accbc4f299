"""``/healthz``, ``/readyz`` and ``/metrics``: open to probes and scrapers, keys or not."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import MetricsDep, PublisherDep, StoreDep
from api.examples import READYZ_RESPONSES, UNKNOWN_PARAMETER_RESPONSE, json_examples
from api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@router.get(
    "/healthz",
    response_model=Health,
    summary="200 while the process runs",
    responses={200: {"content": json_examples(ok={"status": "ok"})}, **UNKNOWN_PARAMETER_RESPONSE},
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="200 when the broker and the store answer",
    responses=READYZ_RESPONSES,
)
async def readyz(publisher: PublisherDep, store: StoreDep) -> Readiness | JSONResponse:
    broker = "ok" if publisher.ready else "unavailable"
    try:
        await store.ping()
        store_state = "ok"
    except Exception as exc:  # any failure to answer is "not ready", and says why
        store_state = f"unavailable: {exc}"
    readiness = Readiness(broker=broker, store=store_state)
    if broker != "ok" or store_state != "ok":
        return JSONResponse(status_code=503, content=readiness.model_dump())
    return readiness


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics of this API process",
    description=(
        "Events published, confirmed, requests rejected by reason, publish-confirm latency, "
        "queue depth / consumer count read from the broker and the store's events and bytes "
        "read from the store, both on a timer. The worker serves its own on AGG_METRICS_PORT."
    ),
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **UNKNOWN_PARAMETER_RESPONSE,
    },
)
async def metrics_text(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
