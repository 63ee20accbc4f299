"""Which RabbitMQ the tests use, and small broker-side helpers (queue depth, clean-up).

The broker is ``AGG_TEST_AMQP_URL`` if set, else the local default broker if it answers, else a
RabbitMQ testcontainer where Docker works. With none of these the tests fail with a clear
message: a broker test never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import aio_pika
import aio_pika.abc
import orjson

from aggregator import topology
from aggregator.connection import connect_once
from aggregator.settings import Settings
from aggregator.topology import declare_topology
from scripts.amqp_probe import broker_answers

LOCAL_URL = "amqp://guest:guest@localhost:5672/"


class NoBroker(RuntimeError):
    """No RabbitMQ could be found or started for the tests."""


@contextlib.contextmanager
def test_broker_url() -> Iterator[str]:
    explicit = os.environ.get("AGG_TEST_AMQP_URL")
    if explicit:
        if not broker_answers(explicit):
            raise NoBroker(f"AGG_TEST_AMQP_URL={explicit} does not answer an AMQP handshake")
        yield explicit
        return
    if broker_answers(LOCAL_URL):
        yield LOCAL_URL
        return
    if not docker_works():
        raise NoBroker(
            "no RabbitMQ for the tests: AGG_TEST_AMQP_URL is not set, nothing answers at "
            f"{LOCAL_URL}, and Docker is not available for a testcontainer. Run `make test` "
            "(it starts a local RabbitMQ) or set AGG_TEST_AMQP_URL."
        )
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:4-management") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


def docker_works() -> bool:
    """Whether a Docker engine answers, for a testcontainer."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


async def queue_depth(settings: Settings, queue: str) -> int:
    """Ready messages in ``queue`` (passive declare; the queue must exist)."""
    connection = await connect_once(settings)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def delete_topology(settings: Settings) -> None:
    """Remove the test's exchanges and queues so the shared broker does not accumulate them."""
    connection = await connect_once(settings)
    async with connection:
        await topology.delete_topology(await connection.channel(), settings)


def event_body(event_id: str, topic: str = "app.log", **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "topic": topic,
        "event_id": event_id,
        "timestamp": "2026-11-24T10:00:00Z",
        "source": "test",
        "payload": {"id": event_id},
    }
    body.update(fields)
    return body


async def publish_raw(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    """Publish ``(routing_key, body)`` pairs as any AMQP producer would: persistent, confirmed.

    Declares the topology first (idempotent), as the contract asks of every producer process.
    """
    connection = await connect_once(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topology = await declare_topology(channel, settings)
        await asyncio.gather(
            *(
                topology.exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=_message_id(body),
                    ),
                    routing_key=routing_key,
                )
                for routing_key, body in messages
            )
        )


def _message_id(body: bytes) -> str | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    event_id = document.get("event_id") if isinstance(document, dict) else None
    return event_id if isinstance(event_id, str) else None


async def get_dead_letters(
    settings: Settings, expected: int, timeout: float = 20.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take ``expected`` messages from the dead-letter queue, polling with a deadline."""
    connection = await connect_once(settings)
    taken: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.dead_letter_queue, passive=True)
        deadline = time.monotonic() + timeout
        while len(taken) < expected and time.monotonic() < deadline:
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)  # poll interval with a deadline
            else:
                taken.append(message)
    return taken
