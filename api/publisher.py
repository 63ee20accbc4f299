"""The API's only contact with the broker: one robust connection, one confirm-mode channel.

A publish succeeds only when the broker confirmed every event of the batch. All publishes of a
batch are written together and their confirms awaited together (pipelined), never one by one.

A nack gets the channel replaced: on RabbitMQ 3.10 a channel whose first publish to a quorum
queue came while the queue had no leader (a node just died) is nacked for good, while a new
channel on the same connection is confirmed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError

from aggregator.amqp import PUBLISHER_HEADER, ConfirmsStalled, is_ack, publish_pipelined
from aggregator.connection import BROKER_ERRORS, close_quietly, connect
from aggregator.errors import BrokerUnavailable
from aggregator.events import Event
from aggregator.settings import Settings
from aggregator.tasks import raise_if_cancelling, stop_task
from aggregator.topology import Topology, declare_topology

log = logging.getLogger(__name__)


class Publisher:
    """Publishes events with confirms; connects in the background so the API can start first."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._topology: Topology | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._replacing: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect(), name="publisher-connect")

    async def wait_connected(self) -> None:
        if self._connecting is not None:
            await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        delay = 1.0
        while True:
            connection = await connect(
                self._settings, client_name="aggregator-api", give_up_after_s=None
            )
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._topology = await declare_topology(channel, self._settings)
            except BROKER_ERRORS as exc:
                raise_if_cancelling()
                # For example a queue that exists with other arguments: say so and keep trying,
                # /readyz answers 503 meanwhile.
                log.error("cannot declare the topology: %r; retrying in %.0fs", exc, delay)
                await close_quietly(connection)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._connection, self._channel = connection, channel
            return

    @property
    def ready(self) -> bool:
        """True while a publish can reach the broker right now."""
        return (
            self._connection is not None
            and self._connection.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
            and self._topology is not None
        )

    async def publish(
        self,
        events: Sequence[Event],
        *,
        publisher: str | None = None,
        on_handed: Callable[[int], object] | None = None,
    ) -> None:
        """Return once the broker confirmed every event; raise :class:`BrokerUnavailable` if not.

        ``publisher``: the API key's name, carried in the ``x-publisher`` header and stored with
        each event. ``on_handed(n)`` is called once the n events are on their way to the broker
        (not when the publisher was not even connected).
        """
        if not self.ready or self._channel is None:
            raise BrokerUnavailable("not connected to the broker", reason="not_connected")
        if on_handed is not None:
            on_handed(len(events))
        try:
            results = await publish_pipelined(
                self._channel,
                self._settings.exchange,
                ((e.topic, e.wire, e.event_id) for e in events),
                stall_timeout=self._settings.confirm_timeout_s,
                headers=None if publisher is None else {PUBLISHER_HEADER: publisher},
            )
        except ConfirmsStalled as exc:
            raise BrokerUnavailable(str(exc), reason="timeout") from None
        # Only the broker's Ack counts: a nack, a return, a lost channel, anything else fails.
        failures = [r for r in results if not is_ack(r)]
        if any(isinstance(failure, DeliveryError) for failure in failures):
            self._replace_channel()
        if failures:
            first = failures[0]
            unroutable = isinstance(first, PublishError)
            reason = (
                "returned by the broker as unroutable (no queue bound for the topic)"
                if unroutable
                else repr(first)
            )
            log.warning("%d of %d publish(es) failed: %s", len(failures), len(events), reason)
            raise BrokerUnavailable(
                f"{len(failures)} of {len(events)} event(s) not confirmed: {reason}",
                reason="unroutable" if unroutable else "broker",
            )

    @asynccontextmanager
    async def side_channel(self, *, confirms: bool) -> AsyncIterator[AbstractChannel]:
        """A channel of its own on the API's connection, closed after the block (for the
        dead-letter routes, so they never disturb the publishing channel)."""
        if not self.ready or self._connection is None:
            raise BrokerUnavailable("not connected to the broker", reason="not_connected")
        try:
            channel = await self._connection.channel(publisher_confirms=confirms)
        except BROKER_ERRORS as exc:
            raise_if_cancelling()
            raise BrokerUnavailable(f"cannot open a channel: {exc!r}", reason="broker") from exc
        try:
            yield channel
        finally:
            await close_quietly(channel)

    def _replace_channel(self) -> None:
        if self._replacing is None or self._replacing.done():
            self._replacing = asyncio.create_task(self._new_channel(), name="publisher-channel")

    async def _new_channel(self) -> None:
        """A fresh confirm-mode channel, the topology declared on it; then the old one goes."""
        if self._connection is None:
            return
        try:
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            topology = await declare_topology(channel, self._settings)
        except BROKER_ERRORS as exc:
            raise_if_cancelling()
            log.warning("could not open a new channel after a nack: %r", exc)
            return
        old, self._channel, self._topology = self._channel, channel, topology
        log.info("publishing on a new channel after the broker nacked")
        await close_quietly(old)

    async def close(self) -> None:
        await stop_task(self._replacing)
        await stop_task(self._connecting)
        await close_quietly(self._connection)
        self._connection = self._channel = self._topology = None
