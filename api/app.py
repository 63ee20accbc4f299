"""The FastAPI application: ``create_app(settings)`` wires the publisher, the store and the keys in.

The routes are in ``api/routes/`` (publishing, reading, operations), the refusals and their
responses in ``api/errors.py``, the OpenAPI examples in ``api/examples.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from aggregator.metrics import ApiMetrics
from aggregator.settings import Settings
from aggregator.store import open_store
from aggregator.tasks import stop_task
from api.errors import install_handlers
from api.history import StatsHistory
from api.keys import KeyRing
from api.limits import ConcurrencyLimit, RateLimiter
from api.publisher import Publisher
from api.routes import dead_letters, events, health, stats
from api.routes.docs import add_offline_docs
from api.routes.ingest import ingest_router
from api.routes.otlp import otlp_router
from api.routes.page import add_page
from api.routes.publish import publish_router
from api.schemas import publish_body_schemas
from api.strict_query import STRICT_QUERY

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    metrics = ApiMetrics()
    history = StatsHistory(settings.metrics_interval_s)
    keyring = KeyRing(settings.api_keys_file) if settings.api_keys_file is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        publisher = Publisher(settings)
        publisher.start()
        gauges = asyncio.create_task(
            metrics.queues.refresh_forever(settings, settings.metrics_interval_s)
        )
        store_gauges = asyncio.create_task(
            metrics.store.refresh_forever(store, settings.metrics_interval_s, also=history.record)
        )
        app.state.store, app.state.publisher = store, publisher
        reloads = _reload_keys_on_sighup(keyring)
        try:
            yield
        finally:
            reloads()
            await stop_task(store_gauges)
            await stop_task(gauges)
            await publisher.close()
            await store.close()

    app = FastAPI(
        title="Pub-Sub Log Aggregator",
        version="0.1.0",
        summary="Publish log events over HTTP; each is stored exactly once.",
        lifespan=lifespan,
        docs_url=None,  # served from local files instead (api/routes/docs.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.keyring = keyring
    app.state.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
    app.state.history = history
    app.state.started = time.monotonic()
    install_handlers(app, metrics)
    body_schema, components = publish_body_schemas(settings.max_batch)
    app.include_router(publish_router(settings, body_schema))
    app.include_router(otlp_router(settings))
    app.include_router(ingest_router(settings))
    for reading in (events.router, dead_letters.router, stats.router, health.router):
        app.include_router(reading, dependencies=STRICT_QUERY)
    add_offline_docs(app, dependencies=STRICT_QUERY)
    add_page(app, dependencies=STRICT_QUERY)
    app.add_middleware(
        ConcurrencyLimit,
        limit=settings.max_concurrent_requests,
        exempt=health.OPEN_PATHS,
        on_refused=metrics.rejected.labels("busy").inc,
    )
    app.openapi = _with_components(app.openapi, components)  # type: ignore[method-assign]
    return app


def _reload_keys_on_sighup(keyring: KeyRing | None) -> Callable[[], None]:
    """SIGHUP reads the keys file again (it is also re-read when it changes); returns the undo."""
    if keyring is None:
        return lambda: None
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, keyring.reload)
    except (ValueError, RuntimeError, NotImplementedError) as exc:
        # Not the main thread (an embedding server): the change-on-disk check still applies.
        log.debug("no SIGHUP handler for the keys: %r", exc)
        return lambda: None

    def undo() -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            loop.remove_signal_handler(signal.SIGHUP)

    return undo


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
