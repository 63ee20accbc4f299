"""Taking messages off a queue by hand (``basic.get``), giving them back, moving them on.

For the dead-letter queue over HTTP (aggregator/dead_letters.py): an operator's look, and a
replay after a fix. Not for the worker, which consumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq import spec

from aggregator.amqp.constants import CALL_TIMEOUT_S, PERSISTENT
from aggregator.events import CONTENT_TYPE


@dataclass(frozen=True)
class Got:
    """A message taken with ``basic.get``, unsettled until given back or acked."""

    body: bytes
    tag: int
    routing_key: str
    message_id: str | None
    content_type: str | None
    headers: dict[str, Any] = field(default_factory=dict)


async def _underlay(channel: AbstractChannel) -> aiormq.Channel:
    return cast(aiormq.Channel, await channel.get_underlay_channel())


async def get(channel: AbstractChannel, queue: str, limit: int) -> list[Got]:
    """Up to ``limit`` messages from the head of ``queue`` (manual ack: they stay unsettled)."""
    underlay = await _underlay(channel)
    taken: list[Got] = []
    async with asyncio.timeout(CALL_TIMEOUT_S):
        for _ in range(limit):
            message = await underlay.basic_get(queue, no_ack=False)
            tag = message.delivery_tag
            if tag is None or isinstance(message.delivery, spec.Basic.GetEmpty):
                break
            properties = message.header.properties
            taken.append(
                Got(
                    body=message.body,
                    tag=tag,
                    routing_key=message.routing_key or "",
                    message_id=properties.message_id,
                    content_type=properties.content_type,
                    headers=dict(properties.headers or {}),
                )
            )
    return taken


async def give_back(channel: AbstractChannel, taken: Sequence[Got]) -> None:
    """Return every message taken on ``channel``: one ``nack(requeue, multiple)`` (a return,
    not a failure; see aggregator/dead_letters.py for what RabbitMQ counts)."""
    if taken:
        underlay = await _underlay(channel)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await underlay.basic_nack(max(got.tag for got in taken), multiple=True, requeue=True)


async def move(
    channel: AbstractChannel,
    got: Got,
    *,
    exchange: str,
    routing_key: str,
    headers: dict[str, Any],
    timeout: float,
) -> bool:
    """Publish ``got``'s body to ``exchange``; ack it off its queue once the broker confirmed
    the copy (``channel`` in confirm mode), else give it back. Whether it moved."""
    underlay = await _underlay(channel)
    properties = spec.Basic.Properties(
        content_type=got.content_type or CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=got.message_id,
        headers=headers,
    )
    try:
        async with asyncio.timeout(timeout):
            confirm = await underlay.basic_publish(
                got.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
            )
    except Exception:
        confirm = None
    async with asyncio.timeout(CALL_TIMEOUT_S):
        if isinstance(confirm, spec.Basic.Ack):
            await underlay.basic_ack(got.tag)
            return True
        await underlay.basic_nack(got.tag, requeue=True)
        return False
