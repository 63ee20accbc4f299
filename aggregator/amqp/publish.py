"""Publishing: a batch with its confirms pipelined, and a delivery's copy (dead-lettering)."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Iterable
from typing import cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq import spec
from pamqp.common import FieldTable

from aggregator.amqp.constants import PERSISTENT
from aggregator.amqp.consume import Delivery
from aggregator.events import CONTENT_TYPE

log = logging.getLogger(__name__)


async def publish_copy(
    channel: AbstractChannel,
    delivery: Delivery,
    *,
    exchange: str,
    headers: dict[str, str],
    timeout: float,
) -> None:
    """Publish the delivery's body unchanged, its properties kept plus ``headers``; confirmed."""
    properties = copy.copy(delivery._message.header.properties)
    properties.headers = {**(properties.headers or {}), **headers}
    properties.delivery_mode = PERSISTENT
    async with asyncio.timeout(timeout):
        underlay = await channel.get_underlay_channel()
        await underlay.basic_publish(
            delivery.body,
            exchange=exchange,
            routing_key=delivery.routing_key,
            properties=properties,
            mandatory=True,
        )


def is_ack(result: object) -> bool:
    """Whether a publish result is the broker's ``Basic.Ack`` (anything else is a failure)."""
    return isinstance(result, spec.Basic.Ack)


class ConfirmsStalled(TimeoutError):
    """No confirm came for ``stall_timeout`` seconds while some were still awaited."""

    def __init__(self, confirmed: int, total: int, stall_timeout: float) -> None:
        super().__init__(
            f"the broker confirmed {confirmed} of {total} event(s), then none for"
            f" {stall_timeout:g}s"
        )
        self.confirmed = confirmed


async def publish_pipelined(
    channel: AbstractChannel,
    exchange: str,
    messages: Iterable[tuple[str, bytes, str]],
    *,
    stall_timeout: float,
    headers: FieldTable | None = None,
) -> list[object]:
    """Publish every ``(routing_key, body, message_id)``, then await all their confirms.

    Returns one result per message, in order: the broker's ``Basic.Ack``, or the exception
    (a nack, a return as unroutable with ``on_return_raises``, a lost channel). Published in the
    contract's wire format (JSON, persistent, ``message_id``) with ``mandatory=True``;
    ``wait=False`` lets the next publish take the channel's lock without waiting for this frame
    to reach the socket. Confirms and raising on returns are the channel's, as through aio-pika.

    The wait follows progress, not the clock: it fails with :class:`ConfirmsStalled` only when
    no confirm came for ``stall_timeout`` seconds, so a large batch on a slow broker is not
    refused for its size, and a broker that stopped answering is noticed as soon as a small one.
    """
    underlay = cast(aiormq.Channel, await channel.get_underlay_channel())

    def publishing(routing_key: str, body: bytes, message_id: str) -> Awaitable[object]:
        return underlay.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=spec.Basic.Properties(
                content_type=CONTENT_TYPE,
                delivery_mode=PERSISTENT,
                message_id=message_id,
                headers=headers,
            ),
            mandatory=True,
            wait=False,
        )

    batch = list(messages)
    if len(batch) == 1:
        # One event, the way most services log: no task, no progress event, one timeout.
        try:
            async with asyncio.timeout(stall_timeout):
                return [await publishing(*batch[0])]
        except TimeoutError:
            raise ConfirmsStalled(0, 1, stall_timeout) from None
        except Exception as exc:  # a nack, a return, a lost channel: a result like the others
            return [exc]
    publishes = [asyncio.ensure_future(publishing(*message)) for message in batch]
    progress = asyncio.Event()
    remaining = len(publishes)

    def one_more(_: object) -> None:
        nonlocal remaining
        remaining -= 1
        progress.set()

    for publish in publishes:
        publish.add_done_callback(one_more)
    try:
        while remaining:
            progress.clear()
            try:
                async with asyncio.timeout(stall_timeout):
                    await progress.wait()
            except TimeoutError:
                raise ConfirmsStalled(
                    len(publishes) - remaining, len(publishes), stall_timeout
                ) from None
    except BaseException:
        for publish in publishes:
            publish.cancel()  # the unconfirmed ones; a no-op for the rest
        await asyncio.gather(*publishes, return_exceptions=True)
        raise
    return await asyncio.gather(*publishes, return_exceptions=True)
