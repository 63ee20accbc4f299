"""The worker's memory over a long drain: RSS once consuming, at its peak, and at the end."""

from __future__ import annotations

from pathlib import Path

from aggregator.settings import Settings
from bench import raw
from bench.events import make_workload
from bench.figures import Figures, check, declare_product
from bench.runner import delete_names, env_for, poll_stats, process, read_stats, rss_mb


async def worker_rss(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    """Worker RSS once it consumes and after ``count`` events went through it."""
    await declare_product(settings)
    with process(["-m", "worker"], env_for(settings), work / "worker-rss.log") as worker:
        warmup = min(10_000, max(count // 100, 100))
        first = make_workload(warmup, seed=seed + 1)
        await raw.publish_to(settings.amqp_url, settings.exchange, first, window=1000)
        await poll_stats(settings.db_path, warmup, timeout=120)
        start = rss_mb(worker.pid)
        peak = start
        sent = warmup
        chunk = 50_000
        for offset in range(0, count, chunk):
            size = min(chunk, count - offset)
            workload = make_workload(size, seed=seed + 1000 + offset)
            await raw.publish_to(settings.amqp_url, settings.exchange, workload, window=1000)
            sent += size
            peak = max(peak, rss_mb(worker.pid))
        await poll_stats(settings.db_path, sent, timeout=1800)
        end = rss_mb(worker.pid)
    figures.add("product.worker_rss_start_mb", start)
    figures.add("product.worker_rss_end_mb", end)
    figures.add("product.worker_rss_peak_mb", peak)
    figures.add("product.worker_rss_events", count)
    stats = await read_stats(settings.db_path)
    check(figures, "rss run received", sent, stats.received)
    await delete_names(settings)
