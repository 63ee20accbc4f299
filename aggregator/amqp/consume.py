"""Consuming: deliveries in, and the frames that settle them (ack, nack, reject)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.abc import DeliveredMessage

from aggregator.amqp.constants import CALL_TIMEOUT_S, DELIVERY_COUNT_HEADER, PUBLISHER_HEADER
from aggregator.connection import BROKER_ERRORS
from aggregator.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


class Link:
    """One AMQP channel as the rest of the code sees it: deliveries settle only on theirs."""

    __slots__ = ("_channel", "number")

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self._channel = channel
        self.number = channel.number

    @property
    def is_open(self) -> bool:
        return not self._channel.is_closed

    def closed(self) -> asyncio.Future[object]:
        """A future done once the channel has closed (already done if it has)."""
        return cast(asyncio.Future[object], self._channel.closing)

    # Two Links of one channel (a consumer paused and resumed on it) are the same Link.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and other._channel is self._channel

    def __hash__(self) -> int:
        return id(self._channel)

    def __repr__(self) -> str:
        return f"<Link channel={self.number} {'open' if self.is_open else 'closed'}>"


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """A message the broker delivered to a consumer, until it is settled on its :class:`Link`."""

    body: bytes
    tag: int
    link: Link
    exchange: str
    routing_key: str
    message_id: str | None
    redelivered: bool
    publisher: str | None
    # Earlier deliveries of this message: the quorum queue's x-delivery-count, else 1 for a
    # redelivery the queue does not count (a classic queue), else 0.
    delivery_count: int
    _message: DeliveredMessage


def _delivery(message: DeliveredMessage, link: Link) -> Delivery:
    redelivered = bool(message.redelivered)
    headers = message.header.properties.headers or {}
    count = 0
    if redelivered:
        raw = headers.get(DELIVERY_COUNT_HEADER)
        count = raw if isinstance(raw, int) and raw > 0 else 1
    publisher = headers.get(PUBLISHER_HEADER)
    tag = message.delivery_tag
    assert tag is not None, "a consumed delivery always has a tag"
    return Delivery(
        body=message.body,
        tag=tag,
        link=link,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        message_id=message.header.properties.message_id,
        redelivered=redelivered,
        publisher=publisher if isinstance(publisher, str) else None,
        delivery_count=count,
        _message=message,
    )


@dataclass(frozen=True)
class Subscription:
    link: Link
    consumer_tag: str


async def consume(
    channel: AbstractChannel,
    queue: str,
    on_delivery: Callable[[Delivery], None],
    on_cancelled: Callable[[], None],
) -> Subscription:
    """Consume ``queue`` (manual acks) on the aiormq channel under ``channel``."""
    async with asyncio.timeout(CALL_TIMEOUT_S):
        underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        link = Link(underlay)

        async def deliver(message: DeliveredMessage) -> None:
            on_delivery(_delivery(message, link))

        consume_ok = await underlay.basic_consume(queue, deliver)
    tag = consume_ok.consumer_tag
    assert tag is not None

    def on_cancel(frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag == tag:
            on_cancelled()

    underlay.on_consumer_cancel_callbacks.add(on_cancel)
    return Subscription(link, tag)


async def cancel(subscription: Subscription) -> None:
    """Stop the deliveries; the ones in flight still arrive, before the broker's CancelOk."""
    if not subscription.link.is_open:
        return
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await subscription.link._channel.basic_cancel(subscription.consumer_tag)
    except BROKER_ERRORS as exc:
        raise_if_cancelling()
        log.warning("could not cancel the consumer cleanly: %r", exc)


@dataclass(frozen=True)
class Frame:
    """One settlement frame: ``ack``, or ``nack`` (a return, not a failure) or ``reject``."""

    method: Literal["ack", "nack", "reject"]
    link: Link
    tag: int
    multiple: bool = False
    requeue: bool = False


async def send_frames(frames: Sequence[Frame]) -> None:
    """Send the frames in order; those of a closed channel are moot (the broker redelivers)."""
    for frame in frames:
        channel = frame.link._channel
        if channel.is_closed:
            log.warning(
                "channel %d closed before %s of tag %d; the broker redelivers",
                frame.link.number,
                frame.method,
                frame.tag,
            )
            continue
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                if frame.method == "ack":
                    await channel.basic_ack(frame.tag, multiple=frame.multiple)
                elif frame.method == "nack":
                    await channel.basic_nack(
                        frame.tag, multiple=frame.multiple, requeue=frame.requeue
                    )
                else:
                    await channel.basic_reject(frame.tag, requeue=frame.requeue)
        except BROKER_ERRORS as exc:
            raise_if_cancelling()
            log.warning(
                "could not %s tag %d: %r; the broker redelivers", frame.method, frame.tag, exc
            )
