"""The one module that speaks aiormq: consume, ack, nack, reject, and publishing without waits.

Both processes work on aio-pika's robust connection and channels (they reconnect, reopen and
restore the topology), but the per-message work happens on the aiormq channel underneath:
no ``IncomingMessage`` or ``Message`` object and no second task per message, which is most of
aio-pika's per-message cost. Everything above this module sees bytes, tags and :class:`Link`s.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq import spec
from aiormq.abc import DeliveredMessage
from pamqp.common import FieldTable

from aggregator.connection import BROKER_ERRORS
from aggregator.events import CONTENT_TYPE
from aggregator.tasks import raise_if_cancelling

log = logging.getLogger(__name__)

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on a redelivery
PUBLISHER_HEADER = "x-publisher"  # the API key's name, set by the API on what it publishes
# Every call here ends: a broker that stopped answering (a half-open connection) costs at most
# this long per call, never a worker that holds its deliveries forever.
CALL_TIMEOUT_S = 10.0


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
