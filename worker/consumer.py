"""The worker's only contact with the broker: prefetch, batching, acks, rejects, dead-lettering.

Acknowledgement policy, in one place:

* A delivery is acked only after its event row (or its duplicate count) is committed, or, for
  poison, after the dead-letter exchange confirmed the copy and ``dead_lettered`` is committed.
* A batch is handled by one writer, in delivery order, and finished before the next one starts;
  so on each channel every delivery up to the batch's last tag is either in the batch or already
  settled, and one ``ack(multiple=True)`` on that last tag settles exactly the batch.
* Transient failures (the store stays locked or fails after the in-process retries, the
  dead-letter publish is not confirmed) reject with requeue; the quorum queue's delivery limit
  dead-letters a message that keeps failing. Poison is never requeued.
* A delivery from a channel that has since closed cannot be settled; the broker redelivers it
  and the dedup row absorbs the repeat.

Deliveries are taken straight from the aiormq channel underneath aio-pika's robust channel:
no ``IncomingMessage`` object and no second task per delivery, which is most of aio-pika's
per-message cost. The robust connection and channel still reconnect, reopen, restore the QoS
and the declared topology; re-registering this consumer after a reopen, or after the broker
cancelled it, is done here (``_resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq import spec
from aiormq.abc import DeliveredMessage

from aggregator.amqp import BROKER_ERRORS, connect
from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.store import DedupStore
from aggregator.topology import ERROR_HEADER, Topology, declare_topology
from worker.processing import BatchOutcome, BatchProcessor, StoreUnavailable

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.2


class Consumer:
    """Consumes ``AGG_QUEUE`` until :meth:`stop` (or, in drain mode, until the queue is empty)."""

    def __init__(
        self,
        settings: Settings,
        store: DedupStore,
        *,
        drain: bool = False,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.metrics = metrics or WorkerMetrics()
        self._processor = BatchProcessor(
            store, attempts=settings.store_attempts, metrics=self.metrics
        )
        self._drain = drain
        self._buffer: list[DeliveredMessage] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = asyncio.Event()
        self._deliveries = 0
        self._handling = False
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._topology: Topology | None = None
        # The channel this consumer is registered on, and its tag there.
        self._consuming_on: aiormq.Channel | None = None
        self._consumer_tag: str | None = None
        self._resuming: asyncio.Task[None] | None = None
        # Set once the consumer is registered with the broker (tests and drain wait on it).
        self.consuming = asyncio.Event()

    def stop(self) -> None:
        """Stop taking deliveries; what was delivered is still stored and acked."""
        if not self._stopping.is_set():
            log.info("stopping: finishing the deliveries in hand")
        self._stopping.set()
        self._arrived.set()

    async def run(self) -> None:
        settings = self._settings
        connection = await self._connect_unless_stopped()
        if connection is None:
            log.info("worker closed before it reached the broker")
            return
        self._connection = connection
        try:
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await self._channel.set_qos(prefetch_count=settings.prefetch)
            self._topology = await declare_topology(self._channel, settings)
            await self._start_consuming()
            self._channel.reopen_callbacks.add(self._on_reopen)
            self.consuming.set()
            # The pid tells apart the workers of one `--workers N` group in shared logs.
            log.info(
                "consuming queue=%s exchange=%s prefetch=%d batch=%d pid=%d%s",
                settings.queue,
                settings.exchange,
                settings.prefetch,
                settings.batch_size,
                os.getpid(),
                " (drain mode)" if self._drain else "",
            )
            watcher = asyncio.create_task(self._watch_drain()) if self._drain else None
            # A drain run serves no metrics, so it reads no gauges either.
            gauges = (
                None
                if self._drain
                else asyncio.create_task(
                    self.metrics.queues.refresh_forever(settings, settings.metrics_interval_s)
                )
            )
            try:
                await self._batch_loop()
            finally:
                for task in (watcher, gauges, self._resuming):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        finally:
            with contextlib.suppress(*BROKER_ERRORS):
                await self._connection.close()
            log.info("worker closed")

    async def _connect_unless_stopped(self) -> AbstractRobustConnection | None:
        """The first connection, or None when :meth:`stop` came while it was being retried."""
        connecting = asyncio.ensure_future(
            connect(
                self._settings,
                client_name="aggregator-worker",
                give_up_after_s=0.0 if self._drain else self._settings.connect_timeout_s,
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                await asyncio.wait({connecting})
        return None if connecting.cancelled() else connecting.result()

    async def _start_consuming(self) -> None:
        assert self._channel is not None
        channel = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        consume_ok = await channel.basic_consume(self._settings.queue, self._on_delivery)
        channel.on_consumer_cancel_callbacks.add(self._on_consumer_cancel)
        self._consuming_on, self._consumer_tag = channel, consume_ok.consumer_tag

    def _on_reopen(self, _: Any) -> None:
        self._schedule_resume("the channel reopened")

    def _on_consumer_cancel(self, frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self._consumer_tag:
            log.warning("the broker cancelled the consumer on queue=%s", self._settings.queue)
            self._schedule_resume("the broker cancelled the consumer")

    def _schedule_resume(self, reason: str) -> None:
        if self._stopping.is_set() or (self._resuming is not None and not self._resuming.done()):
            return
        self._resuming = asyncio.create_task(self._resume(reason))

    async def _resume(self, reason: str) -> None:
        """Declare the topology again (idempotent) and consume again, until it works or we stop."""
        assert self._channel is not None
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._topology = await declare_topology(self._channel, self._settings)
                await self._start_consuming()
            except BROKER_ERRORS as exc:
                log.warning(
                    "cannot consume again yet (%s): %r; retrying in %.1fs", reason, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            log.info("consuming queue=%s again after %s", self._settings.queue, reason)
            return

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        self._buffer.append(message)
        self._deliveries += 1
        self._arrived.set()
        if len(self._buffer) >= self._settings.batch_size:
            self._full.set()

    async def _batch_loop(self) -> None:
        batch_s = self._settings.batch_ms / 1000
        while True:
            if not self._buffer:
                if self._stopping.is_set():
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self._stopping.is_set():
                await self._cancel_consumer()
            elif len(self._buffer) < self._settings.batch_size and batch_s > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(batch_s):
                        await self._full.wait()
            batch = self._buffer[: self._settings.batch_size]
            del self._buffer[: len(batch)]
            if len(self._buffer) < self._settings.batch_size:
                self._full.clear()
            self._handling = True
            try:
                await self._handle(batch)
            finally:
                self._handling = False

    async def _cancel_consumer(self) -> None:
        channel, tag = self._consuming_on, self._consumer_tag
        self._consuming_on = self._consumer_tag = None
        if channel is None or tag is None or channel.is_closed:
            return
        try:
            await channel.basic_cancel(tag)
        except BROKER_ERRORS as exc:
            log.warning("could not cancel the consumer cleanly: %r", exc)

    async def _handle(self, batch: Sequence[DeliveredMessage]) -> None:
        self.metrics.consumed.inc(len(batch))
        try:
            outcome = await self._processor.process([message.body for message in batch])
        except StoreUnavailable as exc:
            log.error("requeueing %d deliveries: %s", len(batch), exc)
            self.metrics.requeued.inc(len(batch))
            await self._settle(batch, requeue=True, whole_batch=True)
            return
        failed = await self._dead_letter(batch, outcome)
        if failed:
            self.metrics.requeued.inc(len(failed))
            await self._settle(failed, requeue=True, whole_batch=False)
        await self._settle([m for m in batch if m not in failed], requeue=False, whole_batch=True)

    async def _dead_letter(
        self, batch: Sequence[DeliveredMessage], outcome: BatchOutcome
    ) -> list[DeliveredMessage]:
        """Copy each poison delivery to the dead-letter exchange; return the ones not done."""
        if not outcome.poison:
            return []
        assert self._topology is not None
        poisoned = [(batch[p.index], p.reason) for p in outcome.poison]
        results = await asyncio.gather(
            *(self._publish_dead_letter(message, reason) for message, reason in poisoned),
            return_exceptions=True,
        )
        confirmed: list[tuple[DeliveredMessage, str]] = []
        failed: list[DeliveredMessage] = []
        for (message, reason), result in zip(poisoned, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "dead-letter publish failed: topic=%s message_id=%s: %r; requeueing it",
                    message.routing_key,
                    message.header.properties.message_id,
                    result,
                )
                failed.append(message)
            else:
                confirmed.append((message, reason))
        if confirmed:
            try:
                await self._processor.count_dead_lettered(len(confirmed))
            except StoreUnavailable as exc:
                # The copies are in the dead-letter queue already; a redelivery copies them
                # again, which the contract allows (dead_lettered is at least the poison count).
                log.error("could not count %d dead-lettered: %s", len(confirmed), exc)
                return [message for message, _ in poisoned]
            self.metrics.dead_lettered.inc(len(confirmed))
            for message, reason in confirmed:
                log.warning(
                    "dead-lettered: topic=%s message_id=%s reason=%s",
                    message.routing_key,
                    message.header.properties.message_id,
                    reason,
                )
        return failed

    async def _publish_dead_letter(self, message: DeliveredMessage, reason: str) -> None:
        """The body unchanged, its properties kept, the reason added as a header; confirmed."""
        assert self._channel is not None
        properties = copy.copy(message.header.properties)
        properties.headers = {
            **(properties.headers or {}),
            ERROR_HEADER: reason[:1000],
            "x-original-exchange": message.exchange or "",
            "x-original-routing-key": message.routing_key or "",
        }
        properties.delivery_mode = 2  # persistent
        channel = await self._channel.get_underlay_channel()
        await channel.basic_publish(
            message.body,
            exchange=self._settings.dead_letter_exchange,
            routing_key=message.routing_key or "",
            properties=properties,
            mandatory=True,
            timeout=self._settings.confirm_timeout_s,
        )

    async def _settle(
        self, messages: Sequence[DeliveredMessage], *, requeue: bool, whole_batch: bool
    ) -> None:
        """Ack, or reject with requeue. ``whole_batch``: the messages are every unsettled
        delivery up to their last tag on each channel, so one frame per channel settles them."""
        for channel, group in _by_channel(messages):
            if channel is None:
                log.warning(
                    "%d deliveries came on a channel that has closed; the broker redelivers them",
                    len(group),
                )
                continue
            last_tag = _tag(group[-1])
            try:
                if whole_batch and requeue:
                    await channel.basic_nack(last_tag, multiple=True, requeue=True)
                elif whole_batch:
                    await channel.basic_ack(last_tag, multiple=True)
                else:
                    for message in group:
                        await channel.basic_reject(_tag(message), requeue=requeue)
            except BROKER_ERRORS as exc:
                log.warning(
                    "could not settle %d deliveries: %r; the broker redelivers them",
                    len(group),
                    exc,
                )

    async def _watch_drain(self) -> None:
        """In drain mode, stop once the queue has nothing ready and nothing is in hand."""
        assert self._topology is not None
        queue = self._topology.queue
        quiet_checks = 0
        seen = -1
        while not self._stopping.is_set():
            await asyncio.sleep(DRAIN_POLL_S)
            if self._buffer or self._handling or self._deliveries != seen:
                seen = self._deliveries
                quiet_checks = 0
                continue
            try:
                declared = await queue.declare()
            except BROKER_ERRORS as exc:
                log.warning("drain: could not read the queue depth: %r", exc)
                continue
            ready = declared.message_count or 0
            quiet_checks = quiet_checks + 1 if ready == 0 else 0
            idle = not self._buffer and not self._handling and self._deliveries == seen
            if quiet_checks >= 2 and idle:
                log.info(
                    "drain: queue %s is empty, %d deliveries handled pid=%d",
                    queue.name,
                    seen,
                    os.getpid(),
                )
                self.stop()
                return


def _tag(message: DeliveredMessage) -> int:
    tag = message.delivery_tag
    assert tag is not None, "a consumed delivery always has a tag"
    return tag


def _by_channel(
    messages: Sequence[DeliveredMessage],
) -> Iterator[tuple[aiormq.abc.AbstractChannel | None, list[DeliveredMessage]]]:
    """Consecutive runs of deliveries by the channel they came on (None: it has closed)."""
    run: list[DeliveredMessage] = []
    current: aiormq.abc.AbstractChannel | None = None
    for message in messages:
        channel = None if message.channel.is_closed else message.channel
        if run and channel is not current:
            yield current, run
            run = []
        current = channel
        run.append(message)
    if run:
        yield current, run
