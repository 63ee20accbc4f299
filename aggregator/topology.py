"""Broker topology: every exchange, queue and binding the aggregator uses, declared in one place.

Both the API and the worker call :func:`declare_topology` at start with identical arguments, so
whichever starts first creates everything, and a publish confirmed before any worker ran is held
by a durable queue rather than dropped as unroutable.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from pamqp.common import FieldTable

from aggregator.settings import Settings

BIND_ALL = "#"
ERROR_HEADER = "x-error"


@dataclass(frozen=True)
class Topology:
    """Strong references to the declared objects; a robust channel restores only what is held."""

    exchange: AbstractExchange
    queue: AbstractQueue
    dead_letter_exchange: AbstractExchange
    dead_letter_queue: AbstractQueue


def queue_arguments(settings: Settings) -> FieldTable:
    arguments: FieldTable = {
        "x-queue-type": settings.queue_type,
        "x-dead-letter-exchange": settings.dead_letter_exchange,
    }
    if settings.queue_type == "quorum":
        arguments["x-delivery-limit"] = settings.delivery_limit
        if settings.quorum_group_size is not None:
            arguments["x-quorum-initial-group-size"] = settings.quorum_group_size
    return arguments


def dead_letter_queue_arguments(settings: Settings) -> FieldTable:
    arguments: FieldTable = {"x-queue-type": settings.queue_type}
    if settings.queue_type == "quorum" and settings.quorum_group_size is not None:
        arguments["x-quorum-initial-group-size"] = settings.quorum_group_size
    return arguments


async def declare_topology(channel: AbstractChannel, settings: Settings) -> Topology:
    exchange = await channel.declare_exchange(
        settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dead_letter_exchange = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_letter_queue = await channel.declare_queue(
        settings.dead_letter_queue, durable=True, arguments=dead_letter_queue_arguments(settings)
    )
    await dead_letter_queue.bind(dead_letter_exchange, routing_key="")
    queue = await channel.declare_queue(
        settings.queue, durable=True, arguments=queue_arguments(settings)
    )
    await queue.bind(exchange, routing_key=BIND_ALL)
    return Topology(exchange, queue, dead_letter_exchange, dead_letter_queue)


async def delete_topology(channel: AbstractChannel, settings: Settings) -> None:
    """Delete both queues (with their messages) and both exchanges; missing ones are no-ops.

    For throwaway namespaces (tests, benchmark runs), never called by the API or the worker.
    """
    for queue in (settings.queue, settings.dead_letter_queue):
        await channel.queue_delete(queue)
    for exchange in (settings.exchange, settings.dead_letter_exchange):
        await channel.exchange_delete(exchange)
