"""A store backend for a test: where its data lives, and as many stores on it as the test opens.

The ``stores`` fixture (tests/conftest.py) runs a test once per backend; the factory closes
what it opened when the test ends, so a test that opens several stores on one file or
database (two writers, a reopen) reads the same on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aggregator.events import Event
from aggregator.store import DedupStore, PostgresStore, SqliteStore

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")


class StoreFactory:
    """Opens stores on one SQLite file or one PostgreSQL database; ``url`` is AGG_STORE_URL."""

    def __init__(self, backend: Backend, target: Path | str) -> None:
        self.backend = backend
        self._target = target
        self._opened: list[DedupStore] = []

    @classmethod
    def sqlite(cls, path: Path) -> StoreFactory:
        return cls("sqlite", path)

    @classmethod
    def postgres(cls, url: str) -> StoreFactory:
        return cls("postgres", url)

    @property
    def target(self) -> Path | str:
        """The SQLite file's path, or the PostgreSQL database's URL."""
        return self._target

    @property
    def url(self) -> str:
        if isinstance(self._target, Path):
            return f"sqlite:///{self._target}"
        return self._target

    async def open(self) -> DedupStore:
        store: DedupStore
        if isinstance(self._target, Path):
            store = await SqliteStore.open(self._target)
        else:
            store = await PostgresStore.open(self._target)
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        """Close every store opened here (closing one twice is harmless)."""
        for store in self._opened:
            await store.close()
        self._opened.clear()


def make_event(event_id: str, topic: str = "app.log", **extra: Any) -> Event:
    """An event of the store tests: ``extra`` overrides any of its fields."""
    fields: dict[str, Any] = {
        "topic": topic,
        "event_id": event_id,
        "timestamp": "2026-11-24T10:00:00Z",
        "source": "svc",
        "payload": {"n": event_id},
    }
    fields.update(extra)
    return Event.model_validate(fields)
