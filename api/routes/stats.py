"""``GET /stats``: the counters, and what the store holds now; ``GET /stats/history``: the
counters over the last minutes."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from api.deps import Reading, StoreDep
from api.examples import AUTH_RESPONSES, UNKNOWN_PARAMETER_RESPONSE
from api.history import StatsHistory
from api.schemas import History, StatsOut

router = APIRouter(tags=["read"])


@router.get(
    "/stats",
    response_model=StatsOut,
    summary="Counters (they survive restarts) and the store's size",
    description="`received == unique_processed + duplicate_dropped` always;"
    " `stored_events == unique_processed - expired`.",
    responses={**AUTH_RESPONSES, **UNKNOWN_PARAMETER_RESPONSE},
)
async def stats(caller: Reading, request: Request, store: StoreDep) -> StatsOut:
    current = await store.stats()
    return StatsOut(
        received=current.received,
        unique_processed=current.unique_processed,
        duplicate_dropped=current.duplicate_dropped,
        dead_lettered=current.dead_lettered,
        topics=current.topics,
        expired=current.expired,
        stored_events=current.stored_events,
        store_bytes=current.store_bytes,
        uptime_s=round(time.monotonic() - request.app.state.started, 3),
    )


@router.get(
    "/stats/history",
    response_model=History,
    summary="The counters over the last 15 minutes (the page's rate chart)",
    description="One sample every `AGG_METRICS_INTERVAL_S`, oldest first; a gap where the store"
    " did not answer. Kept in the API's memory: empty after a restart.",
    responses={**AUTH_RESPONSES, **UNKNOWN_PARAMETER_RESPONSE},
)
async def history(caller: Reading, request: Request) -> History:
    recorded: StatsHistory = request.app.state.history
    return History.model_validate({"samples": list(recorded.samples)}, from_attributes=True)
