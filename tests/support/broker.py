"""Which RabbitMQ the tests use, and small broker-side helpers (queue depth, clean-up).

The broker is ``AGG_TEST_AMQP_URL`` if set, else the local default broker if it answers, else a
RabbitMQ testcontainer where Docker works. With none of these the tests fail with a clear
message: a broker test never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import aio_pika

from aggregator.settings import Settings
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
    if not _docker_works():
        raise NoBroker(
            "no RabbitMQ for the tests: AGG_TEST_AMQP_URL is not set, nothing answers at "
            f"{LOCAL_URL}, and Docker is not available for a testcontainer. Run `make test` "
            "(it starts a local RabbitMQ) or set AGG_TEST_AMQP_URL."
        )
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3-management") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return result.returncode == 0


async def queue_depth(settings: Settings, queue: str) -> int:
    """Ready messages in ``queue`` (passive declare; the queue must exist)."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def delete_topology(settings: Settings) -> None:
    """Remove the test's exchanges and queues so the shared broker does not accumulate them."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in (settings.queue, settings.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (settings.exchange, settings.dead_letter_exchange):
            await channel.exchange_delete(exchange)
