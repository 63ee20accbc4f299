"""What every figure of ``python -m bench`` shares: where the values go, how a run checks its own
counts, the ingest load, and the exchanges and queues the figures publish into."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aggregator.connection import connect_once
from aggregator.settings import Settings
from aggregator.topology import declare_topology
from bench import raw

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


def verify(what: str, expected: object, actual: object) -> str:
    """Raise :class:`CountMismatch` unless ``actual == expected``; the line that says it held."""
    if expected != actual:
        raise CountMismatch(f"{what}: expected {expected}, got {actual}")
    return f"{what}: {actual} as expected"


def log_check(what: str, expected: object, actual: object) -> None:
    """:func:`verify`, the line that says it held logged (for modules that keep no Figures)."""
    log.info("%s", verify(what, expected, actual))


def check(figures: Figures, what: str, expected: int, actual: int) -> None:
    figures.checks.append(verify(what, expected, actual))


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


def raw_gateway_args(settings: Settings) -> list[str]:
    """``python -m bench.raw_gateway`` on the settings' port, publishing to their exchange."""
    return [
        "-m", "bench.raw_gateway", "--port", str(settings.port),
        "--amqp-url", settings.amqp_url, "--exchange", settings.exchange,
    ]  # fmt: skip
