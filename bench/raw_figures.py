"""The raw limits of the stack, no product code: aio-pika publish and consume, the raw
pipeline, aiosqlite inserts, and the raw HTTP gateway feeding the raw pipeline end to end."""

from __future__ import annotations

from pathlib import Path

from aggregator.settings import Settings
from bench import raw
from bench.events import make_workload
from bench.figures import (
    DUP_RATE,
    PUBLISH_WINDOWS,
    Figures,
    check,
    declare_plain,
    ingest_load,
    raw_gateway_args,
)
from bench.runner import (
    delete_names,
    env_for,
    last_json_line,
    process,
    queue_depth,
    run_json,
    wait_http,
)


async def raw_figures(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    workload = make_workload(count, dup_rate=DUP_RATE, seed=seed)
    queue = settings.queue
    best = 0.0
    for window in PUBLISH_WINDOWS:
        best = max(
            best,
            await raw.publish(
                settings.amqp_url, settings.exchange, queue, settings.queue_type, workload, window
            ),
        )
    figures.add("raw.publish_confirmed", best)
    check(
        figures,
        "raw publish",
        count * len(PUBLISH_WINDOWS),
        await queue_depth(settings.amqp_url, queue),
    )
    figures.add("raw.consume_batched_acks", await raw.consume(settings.amqp_url, queue, count))
    figures.add(
        "raw.pipeline", await raw.pipeline(settings.amqp_url, queue, work / f"raw-{seed}.db", count)
    )
    figures.add(
        "raw.sqlite_batched_insert", await raw.sqlite_insert(work / f"sql-{seed}.db", workload)
    )
    await delete_names(settings)


async def raw_searchable(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    """The raw pipeline into a table with the product's full-text index, on a queue of its own
    holding the workload once, so the rows it stores can be checked exactly."""
    workload = make_workload(count, dup_rate=DUP_RATE, seed=seed)
    url, queue = settings.amqp_url, settings.queue
    await raw.publish(url, settings.exchange, queue, settings.queue_type, workload, 1000)
    check(figures, "raw searchable queue depth", count, await queue_depth(url, queue))
    db_path = work / f"raw-search-{seed}.db"
    figures.add(
        "raw.pipeline_searchable", await raw.pipeline(url, queue, db_path, count, searchable=True)
    )
    check(figures, "raw searchable rows", workload.distinct, await raw.count_rows(db_path))
    await delete_names(settings)


async def raw_end_to_end(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    """The raw gateway fed by the load process while the raw pipeline consumes, at once."""
    await declare_plain(settings)
    db = work / f"raw-e2e-{seed}.db"
    distinct = make_workload(count, dup_rate=DUP_RATE, seed=seed).distinct
    gateway_args = raw_gateway_args(settings)
    pipeline_args = [
        "-m", "bench.raw", "pipeline", "--amqp-url", settings.amqp_url,
        "--queue", settings.queue, "--db", str(db), "--count", str(count),
    ]  # fmt: skip
    env = env_for(settings)
    with (
        process(gateway_args, env, work / "raw-gateway.log") as gateway,
        process(pipeline_args, env, work / "raw-pipeline.log") as pipeline,
    ):
        wait_http(f"http://127.0.0.1:{settings.port}/", gateway)
        load = run_json(ingest_load(settings.port, count, seed))
        pipeline.wait(timeout=300)
    finished_at = float(last_json_line(work / "raw-pipeline.log")["finished_at"])
    figures.add("raw.end_to_end", count / (finished_at - load["started_at"]))
    check(figures, "raw end to end confirmed", count, int(load["confirmed"]))
    check(figures, "raw end to end stored", distinct, await raw.count_rows(db))
    await delete_names(settings)
