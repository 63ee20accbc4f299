"""The dedup store: the interface (:mod:`.base`), its backends, and the one way to open one."""

from __future__ import annotations

from aggregator.settings import Settings
from aggregator.store.base import (
    PAGE_BYTES,
    START,
    DedupStore,
    Position,
    Stats,
    StoredEvent,
    StoreResult,
)
from aggregator.store.sqlite import SqliteStore

__all__ = [
    "PAGE_BYTES",
    "START",
    "DedupStore",
    "Position",
    "SqliteStore",
    "StoreResult",
    "Stats",
    "StoredEvent",
    "open_store",
]


async def open_store(settings: Settings) -> DedupStore:
    """The store the settings name, opened (and its schema created where it is new)."""
    return await SqliteStore.open(settings.db_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
