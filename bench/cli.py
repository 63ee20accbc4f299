"""``make bench`` / ``python -m bench``: the product's figures beside the stack's raw limits.

In one run, against one broker, on the same events: the raw limits with no product code
(aio-pika publishing with pipelined confirms, consuming with batched acks, aiosqlite batched
inserts, the raw pipeline, a raw HTTP gateway plus the raw pipeline end to end) and the
product's figures (HTTP ingest, worker drain, end to end, single-event latency, worker RSS
over a long drain, single events at saturation beside the bare gateways), the worker on
PostgreSQL beside raw asyncpg pipelines (``bench/postgres.py``), and ingest and drain on a
private three-node cluster beside a private single node (``bench/cluster.py``). Each repeat runs
every figure once; the table gives min/median/max over repeats and each product figure as a
ratio of its raw figure from the same run.

``--only formats,latency`` runs some groups of figures alone; such a partial run leaves README.md
and ``latest.*`` alone and writes ``partial.{json,md}`` (and ``partial.png``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aggregator.settings import Settings
from bench import cluster, formats, postgres, report, single
from bench.figures import Figures, check, log
from bench.latency import latency
from bench.product import product_drain, product_end_to_end, product_ingest
from bench.raw_figures import raw_end_to_end, raw_figures, raw_searchable
from bench.rss import worker_rss
from bench.runner import delete_names, fresh_settings

# The groups of figures, in the order a repeat runs them. A group holds both sides of the
# comparisons it alone makes (end_to_end: the raw gateway + pipeline and the product; latency
# and single: the raw gateway and the API); ingest and drain compare with the raw group.
# postgres and cluster run their own repeats, on their own database and private nodes.
GROUPS = (
    "raw", "ingest", "drain", "end_to_end", "formats", "latency", "single", "rss",
    "postgres", "cluster",
)  # fmt: skip
ROWS = (*report.SINGLE, *postgres.ROWS, *cluster.ROWS)
COMPARISONS = (*report.COMPARISONS, *postgres.COMPARISONS, *cluster.COMPARISONS)


def groups(text: str) -> tuple[str, ...]:
    """``--only``'s comma list, in the order the run measures them."""
    named = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(named - set(GROUPS))
    if unknown or not named:
        what = ", ".join(unknown) or "(none given)"
        raise argparse.ArgumentTypeError(f"unknown group(s) {what}; choose from {','.join(GROUPS)}")
    return tuple(name for name in GROUPS if name in named)


async def run(args: argparse.Namespace) -> Figures:
    wanted = set(args.only or GROUPS)
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
                if "raw" in wanted:
                    await raw_figures(fresh(), args.events, seed, work, figures)
                    await raw_searchable(fresh(), args.events, seed, work, figures)
                if "end_to_end" in wanted:
                    await raw_end_to_end(fresh(), args.events, seed, work, figures)
                if "ingest" in wanted:
                    await product_ingest(fresh(), args.events, seed, work, figures)
                if "drain" in wanted:
                    await product_drain(fresh(), args.events, seed, work, figures)
                    await product_drain(fresh(), args.events, seed, work, figures, workers=2)
                if "end_to_end" in wanted:
                    await product_end_to_end(fresh(), args.events, seed, work, figures)
                if "formats" in wanted:
                    await formats.measure(
                        fresh, args.events, seed, work, figures.add, lambda *c: check(figures, *c)
                    )
                if "latency" in wanted:
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
                if "single" in wanted:
                    await single.measure(fresh, args.events, seed, work, figures)
            if "rss" in wanted and args.rss_events:
                await worker_rss(fresh(), args.rss_events, 99, work, figures)
            for name, module in (("postgres", postgres), ("cluster", cluster)):
                if name in wanted:
                    measured = await module.figures(amqp_url, args.events, args.repeats)
                    for figure, values in measured.items():
                        for value in values:
                            figures.add(figure, value)
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
    parser.add_argument(
        "--only",
        type=groups,
        default=None,
        metavar="GROUP,...",
        help=f"run only these groups of figures ({','.join(GROUPS)}); README.md and latest.* "
        "stay as they are, the report goes to partial.*",
    )
    args = parser.parse_args(argv)
    if args.only is not None and set(args.only) == set(GROUPS):
        args.only = None  # every group named: a full run
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.time()
    figures = asyncio.run(run(args))
    report.write_report(
        figures.values,
        figures.checks,
        args,
        out=args.out,
        readme=None if args.no_readme or args.only else Path("README.md"),
        took_s=time.time() - started,
        stem="partial" if args.only else "latest",
        rows=ROWS,
        comparisons=COMPARISONS,
    )
    return 0
