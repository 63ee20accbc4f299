"""The product's throughput figures: HTTP ingest, the worker's drain (one process or
``--workers 2``) and end to end, each on the same events as its raw counterpart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aggregator.settings import Settings
from bench import raw
from bench.events import make_workload
from bench.figures import DUP_RATE, Figures, check, declare_product, ingest_load
from bench.runner import (
    delete_names,
    env_for,
    poll_stats,
    process,
    queue_depth,
    read_stats,
    run_json,
    wait_http,
)


async def product_ingest(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    env = env_for(settings)
    with process(["-m", "api"], env, work / "api-ingest.log") as api:
        wait_http(f"http://127.0.0.1:{settings.port}/readyz", api)
        load = run_json(ingest_load(settings.port, count, seed))
    figures.add("product.ingest_http", float(load["events_per_s"]))
    check(figures, "ingest confirmed", count, int(load["confirmed"]))
    check(
        figures, "ingest queue depth", count, await queue_depth(settings.amqp_url, settings.queue)
    )
    await delete_names(settings)


async def prefill(settings: Settings, count: int, seed: int) -> int:
    """Publish ``count`` events (30% duplicates) into the product's queue; return distinct."""
    workload = make_workload(count, dup_rate=DUP_RATE, seed=seed)
    await declare_product(settings)
    # Through the product's topology (quorum, dead-lettering), with the raw publisher's speed.
    await raw.publish_to(settings.amqp_url, settings.exchange, workload, window=1000)
    return workload.distinct


async def product_drain(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures, *, workers: int = 1
) -> None:
    """A running worker (or ``--workers N``) drains a pre-filled queue until all is stored."""
    distinct = await prefill(settings, count, seed)
    name, label = (
        ("product.drain", "drain")
        if workers == 1
        else (
            f"product.drain_{workers}_workers",
            f"drain with {workers} workers",
        )
    )
    command = ["-m", "worker", "--workers", str(workers)]
    with process(command, env_for(settings), work / f"worker-drain-{workers}.log"):
        first_at, first_received, last_at = await poll_stats(settings.db_path, count, timeout=600)
    figures.add(name, (count - first_received) / (last_at - first_at))
    stats = await read_stats(settings.db_path)
    check(figures, f"{label} unique", distinct, stats.unique_processed)
    check(figures, f"{label} received", count, stats.received)
    check(figures, f"{label} duplicates", count - distinct, stats.duplicate_dropped)
    await delete_names(settings)


async def product_end_to_end(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    env = env_for(settings)
    distinct = make_workload(count, dup_rate=DUP_RATE, seed=seed).distinct
    with (
        process(["-m", "api"], env, work / "api-e2e.log") as api,
        process(["-m", "worker"], env, work / "worker-e2e.log"),
    ):
        wait_http(f"http://127.0.0.1:{settings.port}/readyz", api)
        load_task = asyncio.create_task(
            asyncio.to_thread(
                run_json,
                ingest_load(settings.port, count, seed),
            )
        )
        _, _, last_at = await poll_stats(settings.db_path, count, timeout=600)
        load = await load_task
    figures.add("product.end_to_end", count / (last_at - load["started_at"]))
    stats = await read_stats(settings.db_path)
    check(figures, "end-to-end unique", distinct, stats.unique_processed)
    check(figures, "end-to-end received", count, stats.received)
    await delete_names(settings)
