"""``make bench`` / ``python -m bench``: the product's figures beside the stack's raw limits.

In one run, against one broker, on the same events: the raw limits with no product code
(aio-pika publishing with pipelined confirms, consuming with batched acks, aiosqlite batched
inserts, the raw pipeline, a raw HTTP gateway plus the raw pipeline end to end) and the
product's figures (HTTP ingest, worker drain, end to end, single-event latency, worker RSS
over a long drain). Each repeat runs every figure once; the table gives min/median/max over
repeats and each product figure as a ratio of its raw figure from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.connection import connect_once
from aggregator.settings import Settings
from aggregator.topology import declare_topology
from bench import formats, raw
from bench.events import make_workload
from bench.report import write_report
from bench.runner import (
    delete_names,
    env_for,
    fresh_settings,
    last_json_line,
    poll_stats,
    process,
    queue_depth,
    read_stats,
    rss_mb,
    run_json,
    wait_http,
)

log = logging.getLogger("bench")

DUP_RATE = 0.3
INGEST_BATCH = 1000
INGEST_CONCURRENCY = 4
PUBLISH_WINDOWS = (100, 1000, 5000)


@dataclass
class Figures:
    """Every figure of one run: name -> one value per repeat."""

    values: dict[str, list[float]] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)
        log.info("%-28s %12.1f", name, value)


class CountMismatch(AssertionError):
    """A run stored a different number of events than it sent: its figure means nothing."""


def check(figures: Figures, what: str, expected: int, actual: int) -> None:
    if expected != actual:
        raise CountMismatch(f"{what}: expected {expected}, got {actual}")
    figures.checks.append(f"{what}: {actual} as expected")


def producer_args(
    url: str,
    count: int,
    *,
    batch: int,
    concurrency: int,
    dup_rate: float,
    seed: int,
    rate: float = 0,
) -> list[str]:
    return [
        "-m",
        "producer",
        "--via",
        "http",
        "--url",
        url,
        "--count",
        str(count),
        "--batch",
        str(batch),
        "--concurrency",
        str(concurrency),
        "--dup-rate",
        str(dup_rate),
        "--seed",
        str(seed),
        "--rate",
        str(rate),
        "--no-progress",
        "--json",
    ]


def ingest_load(port: int, count: int, seed: int) -> list[str]:
    """The ingest load every throughput figure uses: batches of 1,000, 4 in flight, 30% dups."""
    return producer_args(
        f"http://127.0.0.1:{port}",
        count,
        batch=INGEST_BATCH,
        concurrency=INGEST_CONCURRENCY,
        dup_rate=DUP_RATE,
        seed=seed,
    )


async def declare_plain(settings: Settings) -> None:
    """A plain exchange and queue of the settings' type, for the raw figures."""
    connection = await connect_once(settings)
    async with connection:
        channel = await connection.channel()
        await raw.declare(channel, settings.exchange, settings.queue, settings.queue_type)


async def declare_product(settings: Settings) -> None:
    """The product's own topology (quorum, dead-lettering), as the API and worker declare it."""
    connection = await connect_once(settings)
    async with connection:
        channel = await connection.channel()
        await declare_topology(channel, settings)


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


async def raw_end_to_end(
    settings: Settings, count: int, seed: int, work: Path, figures: Figures
) -> None:
    """The raw gateway fed by the load process while the raw pipeline consumes, at once."""
    await declare_plain(settings)
    db = work / f"raw-e2e-{seed}.db"
    distinct = make_workload(count, dup_rate=DUP_RATE, seed=seed).distinct
    gateway_args = [
        "-m", "bench.raw_gateway", "--port", str(settings.port),
        "--amqp-url", settings.amqp_url, "--exchange", settings.exchange,
    ]  # fmt: skip
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


async def latency(
    settings: Settings,
    rate: float,
    count: int,
    seed: int,
    work: Path,
    figures: Figures,
    *,
    raw_gateway: bool,
) -> None:
    env = env_for(settings)
    label = "raw" if raw_gateway else "product"
    if raw_gateway:
        await declare_plain(settings)
        server = [
            "-m", "bench.raw_gateway", "--port", str(settings.port),
            "--amqp-url", settings.amqp_url, "--exchange", settings.exchange,
        ]  # fmt: skip
        health = f"http://127.0.0.1:{settings.port}/"
    else:
        server = ["-m", "api"]
        health = f"http://127.0.0.1:{settings.port}/readyz"
    with (
        process(server, env, work / f"{label}-latency-server.log") as api,
        process(["-m", "worker"], env, work / f"{label}-latency-worker.log"),
    ):
        wait_http(health, api)
        load = run_json(
            producer_args(
                f"http://127.0.0.1:{settings.port}",
                count,
                batch=1,
                concurrency=64,
                dup_rate=0,
                seed=seed,
                rate=rate,
            )
        )
    lat = load["latency_ms"]
    figures.add(f"{label}.latency_p50_ms", float(lat["p50"]))
    figures.add(f"{label}.latency_p99_ms", float(lat["p99"]))
    figures.add(f"{label}.latency_max_ms", float(lat["max"]))
    figures.add(f"{label}.latency_rate", float(load["events_per_s"]))
    check(figures, f"{label} latency confirmed", count, int(load["confirmed"]))
    await delete_names(settings)


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


async def run(args: argparse.Namespace) -> Figures:
    base = Settings()
    amqp_url = args.amqp_url or base.amqp_url
    figures = Figures()
    used: list[Settings] = []
    with tempfile.TemporaryDirectory(prefix="agg-bench-") as tmp:
        work = Path(tmp)

        def fresh(**overrides: Any) -> Settings:
            used.append(fresh_settings(amqp_url, work, args.queue_type, **overrides))
            return used[-1]

        try:
            for repeat in range(args.repeats):
                seed = 1000 + repeat
                log.info("repeat %d of %d", repeat + 1, args.repeats)
                await raw_figures(fresh(), args.events, seed, work, figures)
                await raw_end_to_end(fresh(), args.events, seed, work, figures)
                await product_ingest(fresh(), args.events, seed, work, figures)
                await product_drain(fresh(), args.events, seed, work, figures)
                await product_drain(fresh(), args.events, seed, work, figures, workers=2)
                await product_end_to_end(fresh(), args.events, seed, work, figures)
                await formats.measure(
                    fresh, args.events, seed, work, figures.add, lambda *c: check(figures, *c)
                )
                count = int(args.latency_rate * args.latency_seconds)
                for raw_gateway in (True, False):
                    await latency(
                        fresh(),
                        args.latency_rate,
                        count,
                        seed,
                        work,
                        figures,
                        raw_gateway=raw_gateway,
                    )
            if args.rss_events:
                await worker_rss(fresh(), args.rss_events, 99, work, figures)
        finally:
            # A measurement that failed half-way leaves its queues behind; delete them all
            # (deleting what is already gone is a no-op for RabbitMQ).
            for settings in used:
                await delete_names(settings)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per throughput figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--latency-rate", type=float, default=500.0, help="single-event POSTs per second"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rss-events", type=int, default=1_000_000, help="0 skips the RSS run")
    parser.add_argument(
        "--queue-type", choices=["quorum", "classic"], default=Settings().queue_type
    )
    parser.add_argument("--amqp-url", default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--no-readme", action="store_true", help="leave README.md alone (smoke runs)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.time()
    figures = asyncio.run(run(args))
    write_report(
        figures.values,
        figures.checks,
        args,
        out=args.out,
        readme=None if args.no_readme else Path("README.md"),
        took_s=time.time() - started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
