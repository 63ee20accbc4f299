"""A node of three can die: the API and the workers on a private cluster lose nothing.

Every process is given all three nodes (``AGG_AMQP_URL`` as a comma list) and the quorum queue
is replicated on all three. A steady producer publishes over HTTP throughout; what the API
answered for each event is kept in a ledger: every 202 must end up stored exactly once, a 503
may or may not (the client retries, the dedup absorbs it), nothing else may be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from aggregator.settings import Settings
from tests.conftest import make_settings
from tests.support.broker import delete_topology, queue_depth
from tests.support.ledger import (
    PROMPT_S,
    Attempt,
    Ledger,
    assert_alive,
    assert_stored_exactly_once,
    cancel,
    current,
    keep_publishing,
    make_events,
    publish_accepted,
    readyz_status,
)
from tests.support.netns import Host
from tests.support.processes import free_port, settings_env, start_api, start_worker
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.waiting import eventually

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# How long the producer must be answered 202 again after a node dies (the contract allows 30 s
# after a broker comes back; a surviving quorum takes over in about a second).
FAILOVER_S = 30.0
REJOIN_TIMEOUT_S = 90.0


def cluster_settings(cluster: RabbitCluster, tmp_path: Path) -> Settings:
    return make_settings(
        ",".join(cluster.urls),
        tmp_path,
        host="127.0.0.1",
        port=free_port(),
        quorum_group_size=3,
        heartbeat_s=2,
        reconnect_interval_s=0.3,
    )


@contextlib.asynccontextmanager
async def producing(client: httpx.AsyncClient, ledger: Ledger) -> AsyncIterator[list[Attempt]]:
    """A steady producer (batches of 10 new events) for the block; its attempts so far."""
    attempts: list[Attempt] = []
    done = asyncio.Event()
    task = asyncio.create_task(keep_publishing(client, ledger, attempts, done))
    try:
        await eventually(lambda: current(len(attempts)), lambda n: n >= 5, what="a steady stream")
        yield attempts
    finally:
        # Let the request in flight finish and be recorded: cancelled, its events could be
        # stored without the ledger knowing they were sent.
        done.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), PROMPT_S + 1)
        finally:
            await cancel(task)


async def lose_node(
    cluster: RabbitCluster, node: int, attempts: list[Attempt], what: str
) -> tuple[float, int]:
    """Kill -9 ``node`` under the stream; seconds to the first 202 after it, and 503s meanwhile."""
    killed = time.monotonic()
    await asyncio.to_thread(cluster.kill9, node)
    after = await eventually(
        lambda: current([a for a in attempts if a.sent > killed]),
        lambda tried: any(a.answer.status == 202 for a in tried),
        timeout=FAILOVER_S,
        what=f"a 202 after {what} (node {node}) died",
    )
    first_ok = min(a.answered for a in after if a.answer.status == 202)
    refused = sum(a.answer.status == 503 for a in after if a.answered <= first_ok)
    # Some more traffic on the two survivors before the node comes back.
    await eventually(
        lambda: current([a for a in attempts if a.sent > first_ok]),
        lambda later: sum(a.answer.status == 202 for a in later) >= 20,
        timeout=FAILOVER_S,
        what="the stream to carry on on two nodes",
    )
    await asyncio.to_thread(cluster.start, node, REJOIN_TIMEOUT_S)
    return first_ok - killed, refused


async def node_of(cluster: RabbitCluster, connection_name: str) -> int:
    """The node holding a connection of that name (the first, if several do)."""

    async def holders() -> list[int]:
        found = []
        for i in cluster.running():
            for conn in await asyncio.to_thread(cluster.connections_on, i):
                if conn.client_properties.get("connection_name") == connection_name:
                    found.append(i)
        return found

    nodes = await eventually(holders, bool, what=f"a node holding {connection_name}")
    return nodes[0]


@pytest.mark.timeout(420)
async def test_losing_the_queue_leader_then_a_workers_node_loses_nothing(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    settings = cluster_settings(cluster, tmp_path)
    ledger = Ledger()
    try:
        with (
            start_worker(settings, tmp_path / "worker-1.log") as worker_1,
            start_worker(settings, tmp_path / "worker-2.log") as worker_2,
            start_api(settings, tmp_path / "api.log") as api,
        ):
            async with httpx.AsyncClient(base_url=api.base_url) as client:
                await eventually(lambda: readyz_status(client), lambda s: s == 200, what="ready")
                await publish_accepted(client, make_events(100, "before"), ledger)
                async with producing(client, ledger) as attempts:
                    leader = await asyncio.to_thread(cluster.wait_quorum_leader, settings.queue)
                    leader_s, leader_503 = await lose_node(
                        cluster, leader, attempts, "the queue's leader"
                    )
                    worker_node = await node_of(cluster, "aggregator-worker")
                    worker_s, worker_503 = await lose_node(
                        cluster, worker_node, attempts, "a worker's node"
                    )
                final = await assert_stored_exactly_once(client, ledger, may_store_refused=True)
                assert_alive(api, worker_1, worker_2)
        assert await queue_depth(settings, settings.dead_letter_queue) == 0
        log.info(
            "leader %d killed: first 202 after %.2fs (%d answers 503 before); a worker's node %d"
            " killed: first 202 after %.2fs (%d 503); %d events accepted, %d refused, %s",
            leader,
            leader_s,
            leader_503,
            worker_node,
            worker_s,
            worker_503,
            len(ledger.accepted),
            len(ledger.refused),
            final,
        )
    finally:
        await asyncio.to_thread(cluster.start_all)
        await delete_topology(settings)


@pytest.mark.timeout(300)
async def test_a_worker_cut_off_from_its_node_carries_on_through_another(
    cluster: RabbitCluster, cluster_addresses: list[str], tmp_path: Path
) -> None:
    """The worker runs on a host of its own (a network namespace) that loses the path to its
    node, silently, past the heartbeat, while the other two nodes stay reachable."""
    settings = cluster_settings(cluster, tmp_path)
    urls = [
        node.url_on(address) for node, address in zip(cluster.nodes, cluster_addresses, strict=True)
    ]
    host_settings = settings.model_copy(update={"amqp_url": ",".join(urls)})
    ledger = Ledger()
    try:
        with (
            Host("worker-host") as host,
            (tmp_path / "worker.log").open("ab") as worker_log,
            start_api(settings, tmp_path / "api.log") as api,
        ):
            worker = host.run(
                [sys.executable, "-m", "worker"],
                env=settings_env(host_settings),
                stdout=worker_log,
                stderr=worker_log,
                cwd=Path(__file__).resolve().parents[1],
            )
            async with httpx.AsyncClient(base_url=api.base_url) as client:
                await eventually(lambda: readyz_status(client), lambda s: s == 200, what="ready")
                node = await node_of(cluster, "aggregator-worker")
                async with producing(client, ledger) as attempts:
                    await eventually(
                        lambda: current(len(attempts)), lambda n: n >= 20, what="traffic"
                    )
                    cut = time.monotonic()
                    host.cut_from(cluster_addresses[node])
                    try:
                        moved_to = await eventually(
                            lambda: node_of(cluster, "aggregator-worker"),
                            lambda i: i != node,
                            timeout=60,
                            what="the worker on another node",
                        )
                        moved_s = time.monotonic() - cut
                        await eventually(
                            lambda: current(len(attempts)), lambda n: n >= 60, what="more traffic"
                        )
                    finally:
                        host.heal_from(cluster_addresses[node])
                await assert_stored_exactly_once(client, ledger, may_store_refused=True)
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert await queue_depth(settings, settings.dead_letter_queue) == 0
        log.info(
            "worker cut off from node %d: on node %d after %.1fs; %d accepted",
            node,
            moved_to,
            moved_s,
            len(ledger.accepted),
        )
    finally:
        await delete_topology(settings)
