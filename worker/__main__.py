"""``python -m worker [--drain] [--workers N]``: consume the queue and store each event once.

With ``--workers N`` (or ``AGG_WORKERS``) above 1 it supervises N worker processes that share
the store (``worker/supervisor.py``); with 1, the default, it is the worker itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import prometheus_client
import uvloop

from aggregator.errors import BrokerUnreachable, StoreUnavailable
from aggregator.logs import configure_logging
from aggregator.metrics import WorkerMetrics
from aggregator.settings import MAX_WORKERS, Settings, SettingsError, load_settings
from aggregator.store import open_store
from worker.consumer import Consumer
from worker.supervisor import run_workers

log = logging.getLogger("worker")


class MetricsPortUnavailable(OSError):
    """The worker's metrics port is taken or not allowed."""


async def run(settings: Settings, *, drain: bool) -> None:
    store = await open_store(settings)
    try:
        metrics = WorkerMetrics()
        if settings.metrics_port and not drain:
            try:
                prometheus_client.start_http_server(
                    settings.metrics_port, addr=settings.host, registry=metrics.registry
                )
            except OSError as exc:
                raise MetricsPortUnavailable(
                    f"cannot serve metrics on {settings.host}:{settings.metrics_port}: {exc}; "
                    "set AGG_METRICS_PORT to a free port, or 0 to turn it off"
                ) from exc
            log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        consumer = Consumer(settings, store, drain=drain, metrics=metrics)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, consumer.stop)
        await consumer.run()
    finally:
        await store.close()


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_WORKERS}, not {count}")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "--drain",
        action="store_true",
        help="consume until the queue is empty, then exit 0",
    )
    parser.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="run N worker processes sharing the store (default: AGG_WORKERS, else 1)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        configure_logging("INFO")
        log.error("%s", exc)
        return 2
    configure_logging(settings.log_level)
    workers: int = settings.workers if args.workers is None else args.workers
    if workers > 1:
        return run_workers(settings, workers=workers, drain=args.drain)
    try:
        uvloop.run(run(settings, drain=args.drain))
    except (BrokerUnreachable, MetricsPortUnavailable, StoreUnavailable) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
