"""Reaching the broker and staying subscribed: the worker's first connection (unless it is told to
stop first), its consumer on ``AGG_QUEUE``, and consuming again after the channel reopens or the
broker cancels the consumer, until the worker stops.

What arrives goes to the consumer's ``on_delivery``; what is done with it is
:mod:`worker.consumer`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from aggregator import amqp
from aggregator.amqp import Delivery, Subscription
from aggregator.connection import BROKER_ERRORS, connect
from aggregator.settings import Settings
from aggregator.tasks import raise_if_cancelling
from aggregator.topology import declare_topology

# The name the worker's loop has always logged under.
log = logging.getLogger("worker.consumer")


class Subscriber:
    """The worker's one consumer on ``AGG_QUEUE``, kept registered until ``stopping`` is set."""

    def __init__(
        self,
        settings: Settings,
        on_delivery: Callable[[Delivery], None],
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._on_delivery = on_delivery
        self._stopping = stopping
        self._channel: AbstractRobustChannel | None = None
        self._subscription: Subscription | None = None
        # A resubscription under way (the consumer stops it when it closes).
        self.resuming: asyncio.Task[None] | None = None

    async def connect_unless_stopped(self, *, drain: bool) -> AbstractRobustConnection | None:
        """The first connection, or None when ``stopping`` was set while it was being retried."""
        connecting = asyncio.ensure_future(
            connect(
                self._settings,
                client_name="aggregator-worker",
                give_up_after_s=0.0 if drain else self._settings.connect_timeout_s,
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                await asyncio.wait({connecting}, timeout=5)
        if not connecting.done() or connecting.cancelled():
            return None
        return connecting.result()

    async def start(self, channel: AbstractRobustChannel) -> None:
        """Consume on ``channel`` (the topology declared), and again whenever it reopens."""
        self._channel = channel
        await self._subscribe()
        channel.reopen_callbacks.add(self._on_reopen)

    async def unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await amqp.cancel(subscription)

    async def _subscribe(self) -> None:
        assert self._channel is not None
        self._subscription = await amqp.consume(
            self._channel,
            self._settings.queue,
            self._on_delivery,
            lambda: self._schedule_resume("the broker cancelled the consumer"),
        )

    def _on_reopen(self, _: object) -> None:
        self._schedule_resume("the channel reopened")

    def _schedule_resume(self, reason: str) -> None:
        if self._stopping.is_set() or (self.resuming is not None and not self.resuming.done()):
            return
        self.resuming = asyncio.create_task(self._resume(reason), name="consumer-resume")

    async def _resume(self, reason: str) -> None:
        """Declare the topology again (idempotent) and consume again, until it works or we stop."""
        assert self._channel is not None
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await declare_topology(self._channel, self._settings)
                await self._subscribe()
            except BROKER_ERRORS as exc:
                raise_if_cancelling()
                log.warning(
                    "cannot consume again yet (%s): %r; retrying in %.1fs", reason, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            log.info("consuming queue=%s again (%s)", self._settings.queue, reason)
            return
