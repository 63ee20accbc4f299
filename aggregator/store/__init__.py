"""The dedup store: the interface (:mod:`.base`), its backends, and the one way to open one."""

from __future__ import annotations

from pathlib import Path

from aggregator.settings import Settings, store_target
from aggregator.store.base import (
    EVERYTHING,
    PAGE_BYTES,
    START,
    DedupStore,
    EventQuery,
    Position,
    Stats,
    StoredEvent,
    StoreResult,
)
from aggregator.store.postgres import PostgresStore
from aggregator.store.sqlite import SqliteStore

__all__ = [
    "EVERYTHING",
    "PAGE_BYTES",
    "START",
    "DedupStore",
    "EventQuery",
    "Position",
    "PostgresStore",
    "SqliteStore",
    "StoreResult",
    "Stats",
    "StoredEvent",
    "open_store",
]


async def open_store(settings: Settings) -> DedupStore:
    """The store the settings name, opened (and its schema created or migrated where needed)."""
    backend, target = store_target(settings.effective_store_url)
    if backend == "postgresql":
        return await PostgresStore.open(
            target,
            pool_size=settings.store_pool_size,
            connect_timeout_s=settings.connect_timeout_s,
        )
    return await SqliteStore.open(Path(target), busy_timeout_ms=settings.sqlite_busy_timeout_ms)
