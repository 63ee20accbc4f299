"""The benchmark's output: a table (stdout and README), JSON and a PNG chart under bench/results."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.chart import chart, spread
from bench.comparison import Comparison, Row, ratios

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "HTTP ingest (batches of 1,000) vs raw pipelined publish",
        "product.ingest_http",
        "raw.publish_confirmed",
        0.85,
    ),
    Comparison(
        "worker drain (30% duplicates) vs raw pipeline", "product.drain", "raw.pipeline", 0.9
    ),
    Comparison(
        "worker drain vs raw pipeline with the same full-text index",
        "product.drain",
        "raw.pipeline_searchable",
        1.0,
    ),
    Comparison(
        "end to end vs raw gateway + raw pipeline", "product.end_to_end", "raw.end_to_end", 0.9
    ),
    Comparison(
        "worker drain vs raw aio-pika consume (stretch)",
        "product.drain",
        "raw.consume_batched_acks",
        1.0,
    ),
    Comparison(
        "2 worker processes drain vs raw aio-pika consume (stretch)",
        "product.drain_2_workers",
        "raw.consume_batched_acks",
        1.0,
    ),
    # Ingest formats: at most ~1.2x the native path's cost (API CPU) per event, and so at
    # least 1 / 1.2 of its rate.
    Comparison(
        "OTLP protobuf ingest rate vs native /publish", "formats.otlp", "formats.native", 0.83
    ),
    Comparison("NDJSON ingest rate vs native /publish", "formats.ndjson", "formats.native", 0.83),
    Comparison(
        "OTLP protobuf API CPU per event vs native /publish",
        "formats.otlp_cpu_us",
        "formats.native_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
    Comparison(
        "NDJSON API CPU per event vs native /publish",
        "formats.ndjson_cpu_us",
        "formats.native_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
    # Issue 11: single events as cheap as a bare FastAPI + aio-pika gateway, at saturation; and
    # beside the bare ASGI gateway, what FastAPI itself costs (reported, no target of its own).
    Comparison(
        "single-event POST /publish rate vs bare FastAPI gateway (saturated)",
        "product.single_rps",
        "fastapi.single_rps",
        0.95,
        "requests/s",
    ),
    Comparison(
        "single-event API CPU per request vs bare FastAPI gateway",
        "product.single_cpu_us",
        "fastapi.single_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
    Comparison(
        "single-event API CPU per request vs bare ASGI gateway (the floor)",
        "product.single_cpu_us",
        "raw.single_cpu_us",
        1.2,
        "µs",
        at_most=True,
    ),
)

SINGLE: tuple[Row, ...] = (
    (
        "raw.publish_confirmed",
        "raw: aio-pika publish, confirms pipelined (best window)",
        "events/s",
    ),
    ("raw.consume_batched_acks", "raw: aio-pika consume, batched acks", "events/s"),
    ("raw.sqlite_batched_insert", "raw: aiosqlite batched insert", "rows/s"),
    ("raw.pipeline", "raw: queue → batched insert-or-ignore → ack", "events/s"),
    (
        "raw.pipeline_searchable",
        "raw: the same into a table with the product's full-text index",
        "events/s",
    ),
    ("raw.end_to_end", "raw: HTTP gateway + raw pipeline at once", "events/s"),
    ("product.ingest_http", "product: POST /publish, batches of 1,000, 4 at a time", "events/s"),
    ("product.drain", "product: worker drains a pre-filled queue", "events/s"),
    ("product.drain_2_workers", "product: the same with `--workers 2`", "events/s"),
    ("product.end_to_end", "product: first POST to last event stored", "events/s"),
    ("formats.native", "formats: POST /publish, 1,000 events a request, 4 at a time", "events/s"),
    ("formats.otlp", "formats: POST /v1/logs, OTLP protobuf, the same", "events/s"),
    ("formats.ndjson", "formats: POST /ingest/{topic}, NDJSON records, the same", "events/s"),
    ("formats.native_cpu_us", "formats: API CPU per event, POST /publish", "µs"),
    ("formats.otlp_cpu_us", "formats: API CPU per event, OTLP protobuf", "µs"),
    ("formats.ndjson_cpu_us", "formats: API CPU per event, NDJSON records", "µs"),
    ("raw.single_rps", "raw gateway: single-event POSTs, 32 connections, closed loop", "req/s"),
    ("fastapi.single_rps", "bare FastAPI gateway: the same", "req/s"),
    ("product.single_rps", "product: single-event POST /publish, the same", "req/s"),
    ("raw.single_cpu_us", "raw gateway: server CPU per single-event request", "µs"),
    ("fastapi.single_cpu_us", "bare FastAPI gateway: server CPU per request", "µs"),
    ("product.single_cpu_us", "product: API CPU per single-event request", "µs"),
    ("raw.latency_p50_ms", "raw gateway: single-event POST p50", "ms"),
    ("raw.latency_p99_ms", "raw gateway: single-event POST p99", "ms"),
    ("product.latency_p50_ms", "product: single-event POST p50", "ms"),
    ("product.latency_p99_ms", "product: single-event POST p99 (target ≤ 20 ms)", "ms"),
    ("product.latency_max_ms", "product: single-event POST max", "ms"),
    ("product.worker_rss_start_mb", "product: worker RSS once consuming", "MB"),
    ("product.worker_rss_end_mb", "product: worker RSS after the long drain", "MB"),
    ("product.worker_rss_peak_mb", "product: worker RSS peak during it", "MB"),
)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def table(
    values: dict[str, list[float]],
    args: argparse.Namespace,
    took_s: float,
    rows: Sequence[Row] = SINGLE,
    comparisons: Sequence[Comparison] = COMPARISONS,
) -> str:
    """The figures' table (the ``rows`` measured) and the ratio table (the ``comparisons``)."""
    repeats = max((len(v) for v in values.values()), default=1)
    only = getattr(args, "only", None)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"{args.queue_type} queues, {args.events:,} events of ~220 bytes per throughput figure "
        f"(30% duplicates), {repeats} repeat(s), min / median / max; "
        f"the whole run took {took_s / 60:.1f} min."
        + (f" Only {', '.join(only)}: a partial run." if only else ""),
        "",
        "| figure | min | median | max | unit |",
        "|---|---:|---:|---:|---|",
    ]
    for key, label, unit in rows:
        if key in values:
            low, mid, high = spread(values[key])
            lines.append(_row(label, _fmt(low), _fmt(mid), _fmt(high), unit))
    shares_rows = []
    for comparison in comparisons:
        shares = ratios(values, comparison)
        if shares:  # a comparison whose figures were not measured (--only) has no row
            low, mid, high = spread(shares)
            at_most = comparison.at_most
            reached = mid <= comparison.target if at_most else mid >= comparison.target
            met = "yes" if reached else "no"
            target = f"{'≤' if at_most else '≥'} {comparison.target:.2f}"
            shares_rows.append(
                _row(comparison.label, f"{low:.2f}", f"{mid:.2f}", f"{high:.2f}", target, met)
            )
    p99_measured = "product.latency_p99_ms" in values
    rss_measured = "product.worker_rss_end_mb" in values
    if shares_rows or p99_measured or rss_measured:
        lines += [
            "",
            _row("product as a share of the raw limit (same repeat)", "min", "median", "max")
            + " target | met |",
            "|---|---:|---:|---:|---:|---|",
            *shares_rows,
        ]
    if p99_measured:
        p99 = statistics.median(values["product.latency_p99_ms"])
        rate = statistics.median(values.get("product.latency_rate", [0]))
        label = f"single-event p99 at {args.latency_rate:g} req/s (achieved {rate:,.0f}/s)"
        met = "yes" if p99 <= 20 else "no"
        lines.append(_row(label, "", f"{p99:.1f} ms", "", "≤ 20 ms", met))
    if rss_measured:
        growth = values["product.worker_rss_end_mb"][-1] - values["product.worker_rss_start_mb"][-1]
        events = int(values["product.worker_rss_events"][-1])
        met = "yes" if abs(growth) <= 50 else "no"
        label = f"worker RSS growth over {events:,} events"
        lines.append(_row(label, "", f"{growth:+.1f} MB", "", "≤ 50 MB", met))
    return "\n".join(lines)


def write_report(
    values: dict[str, list[float]],
    checks: list[str],
    args: argparse.Namespace,
    *,
    out: Path,
    readme: Path | None,
    took_s: float,
    stem: str = "latest",
    rows: Sequence[Row] = SINGLE,
    comparisons: Sequence[Comparison] = COMPARISONS,
) -> str:
    """The table on stdout, ``out/STEM.{json,md,png}`` (no PNG without a pair to draw), and
    the table in ``readme`` between its markers when one is given."""
    out.mkdir(parents=True, exist_ok=True)
    text = table(values, args, took_s, rows, comparisons)
    sys.stdout.write(text + "\n")
    (out / f"{stem}.json").write_bytes(
        orjson.dumps(
            {
                "measured_at": datetime.now(UTC).isoformat(),
                "arguments": {k: str(v) for k, v in vars(args).items()},
                "figures": values,
                "checks": checks,
                "ratios": {c.label: ratios(values, c) for c in comparisons if ratios(values, c)},
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    (out / f"{stem}.md").write_text(text + "\n")
    chart(values, out / f"{stem}.png")
    if readme is not None and readme.is_file():
        content = readme.read_text()
        if README_START in content and README_END in content:
            head, rest = content.split(README_START, 1)
            _, tail = rest.split(README_END, 1)
            image = "![benchmark chart](bench/results/latest.png)"
            section = f"{README_START}\n{text}\n\n{image}\n{README_END}"
            readme.write_text(head + section + tail)
    return text
