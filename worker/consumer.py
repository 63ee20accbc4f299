"""The worker's loop: deliveries in, batches through the processor, settlement frames out.

What is acked, returned or dead-lettered is decided in :mod:`worker.settlement`; which
deliveries go together in :mod:`worker.batching`; what happens to the bodies in
:mod:`worker.processing`; reaching the broker and staying subscribed in :mod:`worker.subscriber`;
every AMQP call is in :mod:`aggregator.amqp`. This module holds the deliveries in hand and
carries the decisions out.

Every delivery stays in this object's hands from its arrival until it is settled or its channel
closes: in ``_in_hand``, or in the one batch being handled. That is what makes
``ack(multiple=True)`` safe (see :mod:`worker.settlement`), and what makes a delivery that sits
unprocessed impossible: the loop takes a batch whenever anything is in hand, and every wait in
it ends (an arrival, the batch window, a stop).

Memory follows bytes where it can: a batch (decoded into Python objects, about ten times its
bytes) is cut at ``AGG_BATCH_BYTES``. What is in hand is bounded by ``AGG_PREFETCH`` messages
only: RabbitMQ ignores a prefetch size in bytes, and cancelling the consumer does not recall what
the queue already dispatched to the channel (measured: 400 events of 900 KB arrived whole either
way). So ``AGG_PREFETCH`` x ``AGG_MAX_EVENT_BYTES`` is the bound; see README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from aggregator import amqp
from aggregator.amqp import Delivery
from aggregator.connection import close_quietly
from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.store import DedupStore
from aggregator.tasks import stop_task
from aggregator.topology import Topology, declare_topology
from worker.batching import next_batch
from worker.dead_lettering import dead_letter
from worker.drain import watch_drain
from worker.processing import Abandoned, BatchProcessor
from worker.retention import start_retention
from worker.settlement import Decided, Verdict, settle
from worker.subscriber import Subscriber
from worker.summary import ActivitySummary

log = logging.getLogger(__name__)


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
        self._store = store
        self.metrics = metrics or WorkerMetrics()
        self._processor = BatchProcessor(
            store, max_event_bytes=settings.max_event_bytes, metrics=self.metrics
        )
        self._drain = drain
        self._in_hand: list[Delivery] = []
        self._in_hand_bytes = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = asyncio.Event()
        self._abandon: asyncio.Event | None = None
        self._deliveries = 0
        self._handling = False
        self._summary = ActivitySummary()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._topology: Topology | None = None
        self._subscriber = Subscriber(settings, self._on_delivery, self._stopping)
        # Set once the consumer is registered with the broker (tests and drain wait on it).
        self.consuming = asyncio.Event()

    def stop(self) -> None:
        """Stop taking deliveries; what is in hand is still stored and acked (or, while the store
        is down, given back to the queue)."""
        if not self._stopping.is_set():
            log.info("stopping: finishing the deliveries in hand")
        self._stopping.set()
        self._arrived.set()
        if self._abandon is not None:
            self._abandon.set()

    async def run(self) -> None:
        settings = self._settings
        connection = await self._subscriber.connect_unless_stopped(drain=self._drain)
        if connection is None:
            log.info("worker closed before it reached the broker")
            return
        self._connection = connection
        tasks: list[asyncio.Task[None]] = []
        try:
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._channel.set_qos(prefetch_count=settings.prefetch)
            self._topology = await declare_topology(self._channel, settings)
            await self._subscriber.start(self._channel)
            self.consuming.set()
            # The pid tells apart the workers of one `--workers N` group in shared logs.
            log.info(
                "consuming queue=%s exchange=%s prefetch=%d batch=%d/%dB pid=%d%s",
                settings.queue,
                settings.exchange,
                settings.prefetch,
                settings.batch_size,
                settings.batch_bytes,
                os.getpid(),
                " (drain mode)" if self._drain else "",
            )
            if self._drain:
                assert self._topology is not None
                watch = watch_drain(self, self._topology.queue, self._stopping, self.stop)
                tasks.append(asyncio.create_task(watch, name="drain-watch"))
            else:  # a drain run serves no metrics (no gauges), and leaves retention to workers
                gauges = self.metrics.queues.refresh_forever(settings, settings.metrics_interval_s)
                tasks.append(asyncio.create_task(gauges, name="queue-gauges"))
                tasks += start_retention(settings, self._store, self.metrics)
            await self._batch_loop()
        finally:
            self._summary.flush()
            for task in (*tasks, self._subscriber.resuming):
                await stop_task(task)
            await close_quietly(connection)
            log.info("worker closed")

    # -- deliveries in -------------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        self._in_hand.append(delivery)
        self._in_hand_bytes += len(delivery.body)
        self._deliveries += 1
        self._arrived.set()
        if self._is_full():
            self._full.set()

    def _is_full(self) -> bool:
        """Whether a batch would not grow by waiting for more deliveries."""
        settings = self._settings
        return (
            len(self._in_hand) >= settings.batch_size or self._in_hand_bytes >= settings.batch_bytes
        )

    # -- the loop ------------------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        settings = self._settings
        batch_s = settings.batch_ms / 1000
        while True:
            self._forget_closed()
            if not self._in_hand:
                if self._stopping.is_set():
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self._stopping.is_set():
                await self._subscriber.unsubscribe()
            elif not self._is_full() and batch_s > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(batch_s):
                        await self._full.wait()
                self._forget_closed()
            batch = next_batch(
                self._in_hand, max_count=settings.batch_size, max_bytes=settings.batch_bytes
            )
            if not batch:
                continue
            taken = {id(delivery) for delivery in batch}
            self._in_hand = [d for d in self._in_hand if id(d) not in taken]
            self._in_hand_bytes -= sum(len(delivery.body) for delivery in batch)
            self._handling = True
            try:
                await self._handle(batch)
            finally:
                self._handling = False

    def _forget_closed(self) -> None:
        """Drop deliveries whose channel closed: they cannot be settled, the broker redelivers."""
        gone = [delivery for delivery in self._in_hand if not delivery.link.is_open]
        if gone:
            log.warning(
                "%d deliveries came on a channel that has closed; the broker redelivers them",
                len(gone),
            )
            self._in_hand = [delivery for delivery in self._in_hand if delivery.link.is_open]
            self._in_hand_bytes -= sum(len(delivery.body) for delivery in gone)

    # -- one batch -----------------------------------------------------------------------------

    async def _handle(self, batch: Sequence[Delivery]) -> None:
        self.metrics.consumed.inc(len(batch))
        abandon = asyncio.Event()
        if self._stopping.is_set():
            abandon.set()
        # A closed channel ends the wait for the store: nothing of the batch can be settled.
        closed = batch[0].link.closed()
        closed.add_done_callback(lambda _: abandon.set())
        self._abandon = abandon
        try:
            outcome = await self._processor.process(
                [d.body for d in batch], abandon=abandon, publishers=[d.publisher for d in batch]
            )
            assert self._channel is not None
            verdicts = await dead_letter(
                self._channel,
                self._settings,
                self._processor,
                self.metrics,
                batch,
                outcome,
                abandon,
            )
        except Abandoned:
            if batch[0].link.is_open:
                # Stopping while the store is down. No new deliveries first (the ones in
                # flight arrive before the broker's CancelOk), then all of them go back.
                await self._subscriber.unsubscribe()
                await self._give_back([*batch, *self._in_hand])
            else:
                log.warning(
                    "the channel closed while %d deliveries waited for the store; the broker"
                    " redelivers them",
                    len(batch),
                )
            return
        finally:
            self._abandon = None
            closed.cancel()
        for event in outcome.duplicate_events:
            log.debug("duplicate dropped: topic=%s event_id=%s", event.topic, event.event_id)
        self._summary.add(len(outcome.stored), len(outcome.duplicates), len(outcome.poison))
        decided = [
            Decided(d.link, d.tag, verdicts.get(i, Verdict.ACK)) for i, d in enumerate(batch)
        ]
        others = [(delivery.link, delivery.tag) for delivery in self._in_hand]
        await amqp.send_frames(settle(decided, others))

    async def _give_back(self, deliveries: Sequence[Delivery]) -> None:
        """Return deliveries to the queue unsettled: stopping while the store is down."""
        log.warning("returning %d deliveries to the queue: the store is down", len(deliveries))
        self.metrics.requeued.inc(len(deliveries))
        self._in_hand, self._in_hand_bytes = [], 0
        decided = [Decided(d.link, d.tag, Verdict.RETURN) for d in deliveries if d.link.is_open]
        await amqp.send_frames(settle(decided, []))

    # -- what drain mode watches -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._in_hand) or self._handling

    @property
    def deliveries(self) -> int:
        return self._deliveries
