"""AGG_RETENTION: the worker deletes events older than that, in small batches, beside ingest.

Every ``AGG_RETENTION_INTERVAL_S`` it deletes the events whose own timestamp is older than now
minus the retention, oldest first, ``AGG_RETENTION_BATCH`` per transaction, until none is left.
Between two batches it pauses as long as the batch took (10 ms at least), so deleting a large
backlog takes at most half of the store's time: on SQLite, where a delete holds the one write
lock, the worker's own batches (and other workers') get it in between; on PostgreSQL the
deletes lock only the rows they delete, skipping rows another worker is deleting.

The keys of deleted events stay seen (the store's seen keys), so a replay is a duplicate and
the counters stay exact: ``unique_processed`` counts what was ever stored, ``expired`` what
retention deleted. A store that fails is said once, and tried again at the next interval;
ingest is not held for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from aggregator.errors import StoreError
from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.store import DedupStore
from aggregator.tasks import raise_if_cancelling
from aggregator.timestamps import now_micros

log = logging.getLogger(__name__)

MIN_PAUSE_S = 0.01


def start_retention(
    settings: Settings, store: DedupStore, metrics: WorkerMetrics
) -> list[asyncio.Task[None]]:
    """The retention task AGG_RETENTION asks for, started; none when it is unset."""
    if settings.retention_period is None:
        return []
    retention = Retention(
        store,
        keep=settings.retention_period,
        batch=settings.retention_batch,
        interval_s=settings.retention_interval_s,
        metrics=metrics,
    )
    return [asyncio.create_task(retention.run_forever(), name="retention")]


class Retention:
    def __init__(
        self,
        store: DedupStore,
        *,
        keep: timedelta,
        batch: int,
        interval_s: float,
        metrics: WorkerMetrics,
    ) -> None:
        self._store = store
        self._keep_us = keep // timedelta(microseconds=1)
        self._keep = keep
        self._batch = batch
        self._interval_s = interval_s
        self._metrics = metrics
        self._failing = False

    async def run_forever(self) -> None:
        log.info(
            "retention: deleting events older than %s, %d per transaction, every %gs",
            self._keep,
            self._batch,
            self._interval_s,
        )
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval_s)

    async def run_once(self) -> int:
        """Delete every event older than the retention now; how many went."""
        cutoff = now_micros() - self._keep_us
        total = 0
        while True:
            started = time.monotonic()
            try:
                deleted = await self._store.delete_expired(cutoff, self._batch)
            except StoreError as exc:
                raise_if_cancelling()
                if not self._failing:
                    log.warning("retention: the store failed, trying again later: %s", exc)
                self._failing = True
                break
            if self._failing:
                log.info("retention: the store answers again")
                self._failing = False
            total += deleted
            self._metrics.expired.inc(deleted)
            if deleted < self._batch:
                break
            await asyncio.sleep(max(MIN_PAUSE_S, time.monotonic() - started))
        if total:
            before = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=cutoff)
            log.info("retention: deleted %d events older than %s", total, before.isoformat())
        return total
