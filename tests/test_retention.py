"""AGG_RETENTION: parsed strictly; the worker deletes old events in batches, on each store,
and a replay of a deleted event is still a duplicate with the counters exact."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.store import DedupStore
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body
from tests.support.running import api_client, running_worker
from tests.support.stores import StoreFactory, make_event
from tests.support.waiting import eventually
from worker.retention import Retention

OLD = "2025-01-01T00:00:00+01:00"
RECENT = "2999-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("text", "period"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))],
)
def test_retention_takes_a_number_and_a_unit(
    monkeypatch: pytest.MonkeyPatch, text: str, period: timedelta
) -> None:
    monkeypatch.setenv("AGG_RETENTION", text)
    assert Settings().retention_period == period


def test_retention_unset_or_empty_keeps_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGG_RETENTION", raising=False)
    assert Settings().retention_period is None
    monkeypatch.setenv("AGG_RETENTION", "")
    assert Settings().retention_period is None


@pytest.mark.parametrize(
    "text", ["30", "30 d", " 30d", "30D", "0d", "-1d", "1.5h", "30days", "d", "1w", "36501d"]
)
def test_anything_else_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("AGG_RETENTION", text)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "AGG_RETENTION must be a whole number followed by s, m, h or d" in str(caught.value)


class Counting:
    """A store whose delete_expired calls are counted (everything else passes through)."""

    def __init__(self, store: DedupStore, log: list[str] | None = None) -> None:
        self.store = store
        self.deletes: list[int] = []
        self.log = [] if log is None else log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def delete_expired(self, before_us: int, limit: int) -> int:
        deleted = await self.store.delete_expired(before_us, limit)
        self.deletes.append(deleted)
        self.log.append("delete")
        return deleted


async def test_a_pass_deletes_in_batches_until_none_is_left(store: DedupStore) -> None:
    await store.store_events([make_event(f"old-{n}", timestamp=OLD) for n in range(25)])
    await store.store_events([make_event("recent", timestamp=RECENT)])
    counting = Counting(store)
    metrics = WorkerMetrics()
    retention = Retention(
        counting,  # a DedupStore by delegation
        keep=timedelta(days=1),
        batch=10,
        interval_s=60,
        metrics=metrics,
    )
    assert await retention.run_once() == 25
    assert counting.deletes == [10, 10, 5]
    assert metrics.registry.get_sample_value("agg_worker_events_expired_total") == 25
    assert await retention.run_once() == 0
    stats = await store.stats()
    assert (stats.stored_events, stats.expired, stats.unique_processed) == (1, 25, 26)


async def test_writes_go_on_between_the_batches_of_a_long_pass(stores: StoreFactory) -> None:
    store = await stores.open()
    for start in range(0, 2000, 500):
        await store.store_events(
            [make_event(f"old-{n}", timestamp=OLD) for n in range(start, start + 500)]
        )
    log: list[str] = []
    counting = Counting(store, log)
    retention = Retention(
        counting, keep=timedelta(days=1), batch=100, interval_s=60, metrics=WorkerMetrics()
    )
    passing = asyncio.create_task(retention.run_once())
    written = 0
    while not passing.done():
        await store.store_events([make_event(f"new-{written}", timestamp=RECENT)])
        log.append("write")
        written += 1
    assert await passing == 2000
    assert counting.deletes == [100] * 20 + [0]
    deletes = [i for i, entry in enumerate(log) if entry == "delete"]
    gaps = [log[a + 1 : b] for a, b in itertools.pairwise(deletes)]
    if stores.backend == "sqlite":
        # One write lock, taken in turns: after every batch the writer's turn comes.
        assert all("write" in gap for gap in gaps), log
    else:
        # Row locks only: writes run beside the deletes.
        assert sum("write" in gap for gap in gaps) >= len(gaps) // 2, log
    stats = await store.stats()
    assert (stats.expired, stats.stored_events) == (2000, written)


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/stats")
    assert response.status_code == 200
    stats: dict[str, Any] = response.json()
    return stats


@pytest.mark.broker
async def test_the_worker_deletes_old_events_and_their_replays_stay_duplicates(
    amqp_url: str, tmp_path: Path, stores: StoreFactory
) -> None:
    settings = make_settings(
        amqp_url,
        tmp_path,
        store_url=stores.url,
        retention="1d",
        retention_batch=7,
        retention_interval_s=0.2,
    )
    old = [event_body(f"old-{n}", timestamp=OLD) for n in range(30)]
    recent = [event_body(f"new-{n}", timestamp=RECENT) for n in range(5)]
    try:
        async with running_worker(settings), api_client(settings) as client:
            assert (await client.post("/publish", json=old + recent)).status_code == 202
            stats = await eventually(
                lambda: stats_of(client),
                lambda s: s["received"] == 35 and s["expired"] == 30,
                what="35 stored, the 30 old ones expired",
            )
            assert (stats["unique_processed"], stats["stored_events"]) == (35, 5)
            assert (await client.get("/events/app.log/old-0")).status_code == 404

            # Every event again: all duplicates, the deleted ones too; none comes back.
            assert (await client.post("/publish", json=old + recent)).status_code == 202
            stats = await eventually(
                lambda: stats_of(client),
                lambda s: s["received"] == 70,
                what="the replay counted",
            )
            assert stats["received"] == stats["unique_processed"] + stats["duplicate_dropped"]
            assert (stats["unique_processed"], stats["duplicate_dropped"]) == (35, 35)
            assert (stats["stored_events"], stats["expired"]) == (5, 30)
            page = (await client.get("/events")).json()
            assert sorted(e["event_id"] for e in page["events"]) == [f"new-{n}" for n in range(5)]
    finally:
        await delete_topology(settings)
