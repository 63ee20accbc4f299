"""Ingest formats beside the native path: OTLP protobuf (``/v1/logs``) and NDJSON records
(``/ingest/{topic}``) against ``POST /publish``, in the same repeat, with the same load.

Each format gets a fresh API process and queue, and one load process that builds every request
body before the clock starts, then sends them in batches of 1,000 events, 4 in flight: the
same client for all three, so the ratios compare the API's paths, not three clients. The
records are alike: the native event's payload (level, message, a counter, 40 bytes of padding)
as an OTLP record's body and attributes from 8 services, or as a Fluent Bit-like record (a
``date`` double, no id field, so its id is a hash) for 8 topics.

``python -m bench.formats load --url http://127.0.0.1:8080 --format otlp --count 50000``
prints one JSON line: events/s, events confirmed, requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson
import uvloop

from aggregator.settings import Settings
from bench import report
from bench.format_loads import CONCURRENCY, FORMATS, build, load
from bench.runner import (
    cpu_seconds,
    delete_names,
    env_for,
    fresh_settings,
    process,
    queue_depth,
    run_json,
    wait_http,
)
from bench.tables import markdown

# Each format twice per repeat, in mirrored order: a machine that slows down or speeds up
# during the repeat (other work on it) weighs on every format alike.
ORDER = (*FORMATS, *reversed(FORMATS))


async def measure(
    fresh: Callable[[], Settings],
    count: int,
    seed: int,
    work: Path,
    add: Callable[[str, float], None],
    check: Callable[[str, int, int], None],
) -> None:
    """One repeat: each format through fresh API processes, ``count`` events in all.

    Adds ``formats.<format>`` (events/s, the mean of its two runs) and
    ``formats.<format>_cpu_us`` (the API process's CPU time per event: the cost, which the
    other work on a shared machine disturbs far less than the rate).
    """
    rates: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    cpu: dict[str, float] = dict.fromkeys(FORMATS, 0.0)
    half = max(count // 2, 1)
    for fmt in ORDER:
        settings = fresh()
        url = f"http://127.0.0.1:{settings.port}"
        load_args = ["--url", url, "--format", fmt, "--count", str(half), "--seed", str(seed)]
        with process(["-m", "api"], env_for(settings), work / f"api-format-{fmt}.log") as api:
            wait_http(f"{url}/readyz", api)
            before = cpu_seconds(api.pid)
            result = run_json(["-m", "bench.formats", "load", *load_args])
            cpu[fmt] += cpu_seconds(api.pid) - before
        rates[fmt].append(float(result["events_per_s"]))
        check(f"{fmt} ingest confirmed", half, int(result["confirmed"]))
        depth = await queue_depth(settings.amqp_url, settings.queue)
        check(f"{fmt} ingest queue depth", half, depth)
        await delete_names(settings)
    for fmt in FORMATS:
        add(f"formats.{fmt}", sum(rates[fmt]) / len(rates[fmt]))
        add(f"formats.{fmt}_cpu_us", cpu[fmt] / (half * len(rates[fmt])) * 1e6)


async def compare(amqp_url: str, events: int, repeats: int) -> dict[str, list[float]]:
    """The formats' figures alone, ``repeats`` times (``make bench`` runs them with the rest)."""
    values: dict[str, list[float]] = {}
    used: list[Settings] = []

    def check(what: str, expected: int, actual: int) -> None:
        if expected != actual:
            raise AssertionError(f"{what}: expected {expected}, got {actual}")

    with tempfile.TemporaryDirectory(prefix="agg-formats-") as tmp:

        def fresh() -> Settings:
            used.append(fresh_settings(amqp_url, Path(tmp), Settings().queue_type))
            return used[-1]

        def add(name: str, value: float) -> None:
            values.setdefault(name, []).append(value)

        try:
            for repeat in range(repeats):
                await measure(fresh, events, 1000 + repeat, Path(tmp), add, check)
        finally:
            for settings in used:
                await delete_names(settings)
    return values


def table(values: dict[str, list[float]]) -> str:
    """The formats' rows of ``make bench``'s tables."""
    return markdown(
        values,
        [row for row in report.SINGLE if row[0].startswith("formats.")],
        [c for c in report.COMPARISONS if c.product.startswith("formats.")],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__)
    parser.add_argument("command", choices=["load", "compare"])
    parser.add_argument("--url", help="load: the API")
    parser.add_argument("--format", choices=FORMATS, help="load: what to send")
    parser.add_argument("--count", type=int, default=50_000, help="events (in all, to compare)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--repeats", type=int, default=3, help="compare: how many times")
    parser.add_argument("--amqp-url", default=Settings().amqp_url, help="compare: the broker")
    args = parser.parse_args(argv)
    if args.command == "compare":
        values = asyncio.run(compare(args.amqp_url, args.count, args.repeats))
        sys.stdout.write(table(values) + "\n")
        return 0
    if args.url is None or args.format is None:
        parser.error("load needs --url and --format")
    requests = build(args.format, args.count, args.seed)
    result = uvloop.run(load(args.url, requests, args.concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
