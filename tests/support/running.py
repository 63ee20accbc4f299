"""The API and the worker running in the test's own event loop, against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from aggregator.settings import Settings
from aggregator.store import open_store
from api.app import create_app
from worker.consumer import Consumer


@asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Consumer]:
    store = await open_store(settings)
    consumer = Consumer(settings, store)
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(15):
            await asyncio.wait(
                [task, asyncio.ensure_future(consumer.consuming.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        if task.done():
            task.result()  # raises what made the worker stop before consuming
        yield consumer
    finally:
        consumer.stop()
        async with asyncio.timeout(15):
            await task
        await store.close()


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with asyncio.timeout(15):
            await app.state.publisher.wait_connected()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as client:
            yield client
