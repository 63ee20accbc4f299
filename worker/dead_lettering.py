"""Poison to the dead-letter exchange: each copy confirmed, then counted, then acked.

The copy is the delivery's body unchanged, its properties kept, with ``x-error`` (the reason,
one line of at most 1,000 characters), ``x-original-exchange`` and ``x-original-routing-key``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel

from aggregator import amqp
from aggregator.amqp import Delivery
from aggregator.logs import one_line
from aggregator.metrics import WorkerMetrics
from aggregator.settings import Settings
from aggregator.topology import ERROR_HEADER
from worker.processing import BatchOutcome, BatchProcessor
from worker.settlement import Verdict

log = logging.getLogger("worker.consumer")


async def dead_letter(
    channel: AbstractChannel,
    settings: Settings,
    processor: BatchProcessor,
    metrics: WorkerMetrics,
    batch: Sequence[Delivery],
    outcome: BatchOutcome,
    abandon: asyncio.Event,
) -> dict[int, Verdict]:
    """Copy each poison delivery of ``batch`` and count the copies in the store.

    Returns the verdict of each poison index: ACK once copied and counted, RETURN if the broker
    did not confirm the copy. Raises ``Abandoned`` if the count waited for the store in vain.
    """
    if not outcome.poison:
        return {}
    copies = [
        amqp.publish_copy(
            channel,
            batch[poison.index],
            exchange=settings.dead_letter_exchange,
            headers={
                ERROR_HEADER: one_line(poison.reason, 1000),
                "x-original-exchange": batch[poison.index].exchange,
                "x-original-routing-key": batch[poison.index].routing_key,
            },
            timeout=settings.confirm_timeout_s,
        )
        for poison in outcome.poison
    ]
    results = await asyncio.gather(*copies, return_exceptions=True)
    verdicts: dict[int, Verdict] = {}
    for poison, result in zip(outcome.poison, results, strict=True):
        delivery = batch[poison.index]
        if isinstance(result, BaseException):
            log.warning(
                "dead-letter copy not confirmed: topic=%s message_id=%s: %r; returning it",
                delivery.routing_key,
                delivery.message_id,
                result,
            )
            verdicts[poison.index] = Verdict.RETURN
            metrics.requeued.inc()
        else:
            verdicts[poison.index] = Verdict.ACK
    copied = [p for p in outcome.poison if verdicts[p.index] is Verdict.ACK]
    if copied:
        await processor.count_dead_lettered(len(copied), abandon=abandon)
        metrics.dead_lettered.inc(len(copied))
        for poison in copied:
            log.warning(
                "dead-lettered: topic=%s message_id=%s reason=%s",
                batch[poison.index].routing_key,
                batch[poison.index].message_id,
                poison.reason,
            )
    return verdicts
