"""``python -m bench.cluster``: the product on a three-node RabbitMQ cluster beside one node.

Issue 10 (a cluster of three with quorum queues). One run starts, under a temporary directory,
a private single node and a private three-node cluster (``tests/support``'s RabbitNode and
RabbitCluster: their own names, ports and cookies; the machine's broker on 5672 is never
addressed), keeps all four nodes up for the whole run so both sides share the same background,
and stops them at the end, also when a measurement fails.

In each repeat, on each side (which side goes first alternates), with fresh names:

* ``cluster.<side>_ingest_http``: the API publishing what the load process POSTs to
  ``/publish``, batches of 1,000 events, 4 in flight, 30% duplicates (``product.ingest_http``'s
  load); the queue must then hold every event.
* ``cluster.<side>_drain``: one worker draining a pre-filled queue of the same workload into
  SQLite (``product.drain``'s), timed once it consumes; the counters must be exact.

On the cluster every process is given all three nodes (``AGG_AMQP_URL`` as a list) and the
queue has three replicas (``AGG_QUORUM_GROUP_SIZE=3``); the processes connect to the first
node, where the queue's leader then is. The cluster's figures are read as a share of the
single node's from the same repeat: on one machine the three nodes share its cores, so the
ratio is the cost of replication in CPU more than in network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from aggregator.settings import Settings
from bench.comparison import Comparison
from bench.events import make_workload
from bench.figures import log_check as check
from bench.runner import (
    delete_names,
    env_for,
    fresh_settings,
    prefill_product_queue,
    process,
    queue_depth,
    read_store_stats,
    run_json,
    timed_drain,
    tree_cpu_s,
    wait_http,
)
from bench.tables import markdown
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.rabbit_node import RabbitNode

log = logging.getLogger("bench.cluster")

DUP_RATE = 0.3
SIDES = ("single", "three")

ROWS = (
    (
        "cluster.single_ingest_http",
        "one node: POST /publish, batches of 1,000, 4 at a time",
        "events/s",
    ),
    ("cluster.three_ingest_http", "three-node cluster, 3 replicas: the same", "events/s"),
    ("cluster.single_drain", "one node: worker drains a pre-filled queue", "events/s"),
    ("cluster.three_drain", "three-node cluster, 3 replicas: the same", "events/s"),
    ("cluster.single_ingest_http_broker_cpu_us", "one node: its CPU per event ingested", "µs"),
    ("cluster.three_ingest_http_broker_cpu_us", "three nodes: their CPU, the same", "µs"),
    ("cluster.single_drain_broker_cpu_us", "one node: its CPU per event drained", "µs"),
    ("cluster.three_drain_broker_cpu_us", "three nodes: their CPU, the same", "µs"),
)

COMPARISONS = (
    Comparison(
        "three-node cluster vs one node: HTTP ingest",
        "cluster.three_ingest_http",
        "cluster.single_ingest_http",
        0.7,
    ),
    Comparison(
        "three-node cluster vs one node: worker drain",
        "cluster.three_drain",
        "cluster.single_drain",
        0.7,
    ),
    # What replication costs the brokers: three replicas should cost at most three times one.
    Comparison(
        "three nodes' CPU per event vs one node's: HTTP ingest",
        "cluster.three_ingest_http_broker_cpu_us",
        "cluster.single_ingest_http_broker_cpu_us",
        3.0,
        "µs",
        at_most=True,
    ),
    Comparison(
        "three nodes' CPU per event vs one node's: worker drain",
        "cluster.three_drain_broker_cpu_us",
        "cluster.single_drain_broker_cpu_us",
        3.0,
        "µs",
        at_most=True,
    ),
)


class Side(NamedTuple):
    """One side of the comparison: its nodes' AMQP URLs, and its nodes."""

    urls: list[str]
    nodes: list[RabbitNode]

    def cpu_s(self) -> float:
        """CPU seconds its nodes' Erlang VMs have used (each VM's pid is in its pid file)."""
        return sum(
            tree_cpu_s(int((node.base_dir / f"{node.node_name}.pid").read_text()))
            for node in self.nodes
        )


@contextlib.contextmanager
def private_brokers(work: Path) -> Iterator[dict[str, Side]]:
    """A private node and a private three-node cluster, started together, by side. Every
    node is stopped (killed if it will not stop) when the block ends, however."""
    single = RabbitNode(work / "single")
    cluster = RabbitCluster(work / "cluster", size=3)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            # Both run to the end before a failure is raised, so nothing starts after close().
            futures = [pool.submit(single.start), pool.submit(cluster.start_all)]
            for future in futures:
                future.result()
        log.info(
            "private nodes up in %.0f s: %s and %s",
            time.monotonic() - started,
            single.node_name,
            ", ".join(cluster.node_names),
        )
        yield {
            "single": Side([single.url], [single]),
            "three": Side(cluster.urls, [*cluster.nodes]),
        }
    finally:
        try:
            single.close()
        finally:
            cluster.close()


def side_settings(urls: list[str], work: Path) -> Settings:
    """Fresh names on one side: every node listed; on a cluster, a replica on each node."""
    overrides: dict[str, Any] = {"quorum_group_size": len(urls)} if len(urls) > 1 else {}
    return fresh_settings(",".join(urls), work, "quorum", **overrides)


def ingest_load(port: int, count: int, seed: int) -> list[str]:
    """``product.ingest_http``'s load: batches of 1,000, 4 in flight, 30% duplicates."""
    return [
        "-m", "producer", "--via", "http", "--url", f"http://127.0.0.1:{port}",
        "--count", str(count), "--batch", "1000", "--concurrency", "4",
        "--dup-rate", str(DUP_RATE), "--seed", str(seed), "--rate", "0",
        "--no-progress", "--json",
    ]  # fmt: skip


async def measure_ingest(
    settings: Settings, count: int, seed: int, log_path: Path, side: Side
) -> tuple[float, float]:
    """Events per second, and the nodes' CPU µs per event while the load ran."""
    with process(["-m", "api"], env_for(settings), log_path) as api:
        wait_http(f"http://127.0.0.1:{settings.port}/readyz", api)
        cpu_started = side.cpu_s()
        load = run_json(ingest_load(settings.port, count, seed))
        cpu_us = (side.cpu_s() - cpu_started) / count * 1e6
    check("ingest confirmed", count, int(load["confirmed"]))
    check("ingest queue depth", count, await queue_depth(settings.amqp_urls[0], settings.queue))
    return float(load["events_per_s"]), cpu_us


async def measure_drain(
    settings: Settings, count: int, seed: int, log_path: Path, side: Side
) -> tuple[float, float]:
    """Events per second, and the nodes' CPU µs per event (the worker's start-up included)."""
    workload = make_workload(count, dup_rate=DUP_RATE, seed=seed)
    await prefill_product_queue(settings, workload)
    cpu_started = side.cpu_s()
    rate = (await timed_drain(settings, count, 1, log_path)).rate
    cpu_us = (side.cpu_s() - cpu_started) / count * 1e6
    stats = await read_store_stats(settings)
    check("drain received", count, stats.received)
    check("drain unique", workload.distinct, stats.unique_processed)
    check("drain duplicates", count - workload.distinct, stats.duplicate_dropped)
    check("drain dead-lettered", 0, stats.dead_lettered)
    return rate, cpu_us


async def figures(amqp_url: str, events: int, repeats: int) -> dict[str, list[float]]:
    """Every figure of this module, one value per repeat; raises CountMismatch on a bad count.

    ``amqp_url`` is not used: this module runs on private nodes only, never on the broker the
    other figures use; it is taken so that every bench module is called the same way.
    """
    del amqp_url
    values: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="agg-bench-cluster-") as tmp,
        private_brokers(Path(tmp) / "brokers") as sides,
    ):
        work = Path(tmp)
        for repeat in range(repeats):
            seed = 1000 + repeat
            for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
                for what in ("ingest_http", "drain"):
                    settings = side_settings(sides[side].urls, work)
                    log_path = work / f"{side}-{what}-{repeat}.log"
                    try:
                        measure = measure_ingest if what == "ingest_http" else measure_drain
                        rate, cpu_us = await measure(settings, events, seed, log_path, sides[side])
                    finally:
                        await delete_names(settings)
                    name = f"cluster.{side}_{what}"
                    values.setdefault(name, []).append(rate)
                    values.setdefault(f"{name}_broker_cpu_us", []).append(cpu_us)
                    log.info("repeat %d: %-24s %8.0f/s %6.1f µs", repeat + 1, name, rate, cpu_us)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events per figure")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    started = time.monotonic()
    values = asyncio.run(figures("", args.events, args.repeats))
    sys.stdout.write(
        f"{args.events:,} events (30% duplicates) per figure, {args.repeats} repeat(s), "
        f"{os.cpu_count()} cores, quorum queues; took {time.monotonic() - started:.0f} s "
        f"(starting and stopping four private nodes included)\n\n"
        f"{markdown(values, ROWS, COMPARISONS)}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
