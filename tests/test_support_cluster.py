"""The private three-node RabbitMQ cluster helper (tests/support/rabbit_cluster.py) does what
failover tests will lean on: a quorum queue with a replica on each node survives a kill -9 of
its leader, a new leader is elected among the other two, publishes confirm through a
surviving node, and the killed node comes back into the cluster as itself, losing nothing.

The cluster is the session's (tests/conftest.py: forming it is the slow part); never the
machine's shared broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter

import aio_pika
import aio_pika.abc
import aiormq
import pytest
from aio_pika.exceptions import DeliveryError
from pamqp.common import FieldTable

from tests.support.rabbit_cluster import RabbitCluster
from tests.support.waiting import eventually

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

QUORUM_ARGS: FieldTable = {"x-queue-type": "quorum", "x-quorum-initial-group-size": 3}
PER_PHASE = 100
# One publish's confirm; a quorum queue confirms in milliseconds when it has a leader.
CONFIRM_TIMEOUT_S = 10.0
# Measured here: a new leader within ~0.5 s (one CLI round trip), a rejoin within ~8 s.
LEADER_TIMEOUT_S = 30.0
REJOIN_TIMEOUT_S = 90.0


def message(body: str) -> aio_pika.Message:
    return aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def publish_confirmed(
    channel: aio_pika.abc.AbstractChannel, queue: str, bodies: list[str], *, within: float = 60.0
) -> set[str]:
    """Publish each body and wait for the broker's Ack; a Nack or a lost confirm (both
    possible while a leader changes) is published again until ``within`` runs out.

    Returns the bodies that took more than one try: the broker may hold those twice.
    """
    deadline = time.monotonic() + within
    retried: set[str] = set()

    async def one(body: str) -> None:
        while True:
            try:
                confirm = await channel.default_exchange.publish(
                    message(body), routing_key=queue, timeout=CONFIRM_TIMEOUT_S
                )
                assert isinstance(confirm, aiormq.spec.Basic.Ack), confirm
                return
            except (DeliveryError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise AssertionError(f"{body} was never confirmed: {exc!r}") from exc
                retried.add(body)
            await asyncio.sleep(0.05)  # back-off before publishing again, not synchronisation

    await asyncio.gather(*(one(body) for body in bodies))
    return retried


async def drain(url: str, queue: str) -> Counter[str]:
    """Every message in ``queue``, acknowledged, counted by body."""
    received: Counter[str] = Counter()
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (got := await declared.get(no_ack=False, fail=False, timeout=10)) is not None:
            received[got.body.decode()] += 1
            await got.ack()
    return received


@pytest.mark.timeout(240)
async def test_quorum_queue_rides_out_a_kill9_of_its_leader(cluster: RabbitCluster) -> None:
    queue = f"failover-{uuid.uuid4().hex[:8]}"
    before = [f"before-{i}" for i in range(PER_PHASE)]
    after = [f"after-{i}" for i in range(PER_PHASE)]

    async with await aio_pika.connect(cluster.urls[0]) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.declare_queue(queue, durable=True, arguments=QUORUM_ARGS)
        retried = await publish_confirmed(channel, queue, before)
    assert not retried, f"nacks with every node up: {sorted(retried)[:5]}"

    states = await asyncio.to_thread(cluster.quorum_status, queue)
    assert sorted(states) == [0, 1, 2], f"one replica per node: {states}"
    assert sorted(states.values()) == ["follower", "follower", "leader"], states
    leader = await asyncio.to_thread(cluster.leader_of, queue)

    killed_at = time.monotonic()
    await asyncio.to_thread(cluster.kill9, leader)
    new_leader = await asyncio.to_thread(
        cluster.wait_quorum_leader, queue, timeout=LEADER_TIMEOUT_S
    )
    election_s = time.monotonic() - killed_at
    assert new_leader != leader
    states = await asyncio.to_thread(cluster.quorum_status, queue)
    assert states[leader] == "nodedown", states

    # Publish through the survivor that does not lead, so its channel must route each
    # message to the leader on another node. The connection is opened only now, after the
    # new leader is seen: on 3.10 a channel whose first publish to the queue comes while
    # the leader is down gets nacks for good (measured: 99 nacks in 20 s, back-off 0.2 s),
    # where a new channel is acked at once. That is a finding for the failover tests, not
    # something this test is about.
    (via,) = set(range(3)) - {leader, new_leader}
    async with await aio_pika.connect(cluster.urls[via]) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        retried |= await publish_confirmed(channel, queue, after[:1])
        first_confirm_s = time.monotonic() - killed_at
        retried |= await publish_confirmed(channel, queue, after[1:])

    restarted_at = time.monotonic()
    await asyncio.to_thread(cluster.start, leader, REJOIN_TIMEOUT_S)
    rejoin_s = time.monotonic() - restarted_at
    for i in range(3):
        running = await asyncio.to_thread(cluster.running_nodes, i)
        assert running == set(cluster.node_names), f"node {i} sees {running}"
    await eventually(
        lambda: asyncio.to_thread(cluster.quorum_status, queue),
        lambda s: s.get(leader) == "follower",
        timeout=30,
        what=f"node {leader} back in the queue's Raft group as a follower",
    )
    log.info(
        "leader %d killed: new leader %d seen after %.2fs, first confirm via node %d after "
        "%.2fs; restart + rejoin took %.1fs; retried publishes: %d",
        leader,
        new_leader,
        election_s,
        via,
        first_confirm_s,
        rejoin_s,
        len(retried),
    )

    # Drain through the node that was killed: it serves the queue again.
    received = await drain(cluster.urls[leader], queue)
    expected = set(before) | set(after)
    missing = expected - set(received)
    assert not missing, f"{len(missing)} confirmed messages lost: {sorted(missing)[:10]}"
    unknown = set(received) - expected
    assert not unknown, f"messages nobody published: {sorted(unknown)[:10]}"
    twice = {body for body, n in received.items() if n > 1}
    assert twice <= retried, f"duplicates of messages confirmed at the first try: {twice}"


@pytest.mark.timeout(120)
async def test_extra_listener_and_connections_on(
    cluster: RabbitCluster, cluster_addresses: list[str]
) -> None:
    # Whatever the test before left stopped comes back first.
    await asyncio.to_thread(cluster.start_all)
    name = f"probe-{uuid.uuid4().hex[:8]}"
    extra = cluster_addresses[0]
    url = cluster.nodes[1].url_on(extra)
    async with await aio_pika.connect(url, client_properties={"connection_name": name}):
        held = await eventually(
            lambda: asyncio.to_thread(cluster.connections_on, 1),
            lambda conns: any(c.client_properties.get("connection_name") == name for c in conns),
            timeout=20,
            what=f"node 1 to list the connection {name}",
        )
        (ours,) = [c for c in held if c.client_properties.get("connection_name") == name]
        assert (ours.host, ours.port) == (extra, cluster.nodes[1].amqp_port)
        for other in (0, 2):
            conns = await asyncio.to_thread(cluster.connections_on, other)
            names = [c.client_properties.get("connection_name") for c in conns]
            assert name not in names, f"node {other} claims the connection: {names}"


def test_nodes_are_private(cluster: RabbitCluster, cluster_addresses: list[str]) -> None:
    """Names, ports and directories differ per node and from the shared broker's."""
    names = cluster.node_names
    assert len(set(names)) == 3 and not any(n.startswith("rabbit@") for n in names)
    ports = [p for node in cluster.nodes for p in (node.amqp_port, node.dist_port)]
    assert len(set(ports)) == 6 and not {5672, 25672} & set(ports)
    assert len({node.base_dir for node in cluster.nodes}) == 3
    for node in cluster.nodes:
        conf = (node.base_dir / "rabbitmq.conf").read_text()
        listeners = sorted(line for line in conf.splitlines() if line.startswith("listeners."))
        assert listeners == [
            *(
                f"listeners.tcp.extra{i} = {address}:{node.amqp_port}"
                for i, address in enumerate(cluster_addresses, 1)
            ),
            f"listeners.tcp.local = 127.0.0.1:{node.amqp_port}",
        ]
