"""Memory follows bytes, not message counts: large events through one worker stay bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from aggregator.settings import Settings
from aggregator.store import SqliteStore
from tests.support.broker import event_body, publish_raw
from tests.support.exactly_once import assert_stored_exactly_once
from tests.support.processes import start_worker
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# "A few hundred MB": the worker's peak resident memory over the whole run.
PEAK_RSS_LIMIT_MB = 300


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has had so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


@pytest.mark.timeout(180)
async def test_120_events_of_900_kb_through_one_worker_stay_bounded(
    settings: Settings, tmp_path: Path
) -> None:
    # The defaults a user has: prefetch 1000, so all 120 are in hand at once (108 MB of bodies);
    # batches are cut at AGG_BATCH_BYTES, so only a few are decoded at a time.
    events = [
        event_body(f"big-{i}", payload={"i": i, "blob": f"{i:04}" + "x" * 900_000})
        for i in range(120)
    ]
    store = await SqliteStore.open(settings.db_path)
    try:
        with start_worker(settings, tmp_path / "worker.log") as worker:
            await eventually(
                lambda: asyncio.to_thread(worker.log_text),
                lambda text: "consuming queue=" in text,
                what="the worker to consume",
            )
            await publish_raw(settings, [("app.log", orjson.dumps(e)) for e in events])
            await eventually(
                store.stats, lambda s: s.received >= 120, timeout=120, what="all 120 stored"
            )
            peak = peak_rss_mb(worker.pid)
            log = worker.log_text()
        assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB\n{log[-2000:]}"
        await assert_stored_exactly_once(store, settings, events)
    finally:
        await store.close()
    print(f"worker peak RSS: {peak:.0f} MB")  # noqa: T201 (shown with -s: the measured figure)
