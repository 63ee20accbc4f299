"""The page at ``/``: counters and their rate, events with filters and search, one event's
detail, publishing, dead letters. Static files (api/static/page/), no CDN and no build step;
the page reads the API's own JSON, with the same keys as any client."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.params import Depends as DependsParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static" / "page"
# The page runs only its own script and talks only to this API: a script injected through an
# event (they are shown as text anyway) would have nowhere to load from or send to.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


def add_page(app: FastAPI, dependencies: Sequence[DependsParam] = ()) -> None:
    app.mount("/static/page", StaticFiles(directory=STATIC), name="page-assets")
    app.include_router(router, dependencies=dependencies)
