"""Drain mode (``python -m worker --drain``): stop once the queue is empty and nothing is in hand.

Empty means: the broker reported nothing ready twice in a row, while the worker held nothing and
received nothing new in between, so a delivery on its way cannot be missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Protocol

from aio_pika.abc import AbstractQueue

from aggregator.connection import BROKER_ERRORS
from aggregator.tasks import raise_if_cancelling

log = logging.getLogger("worker.consumer")

POLL_S = 0.2


class Draining(Protocol):
    @property
    def busy(self) -> bool:
        """Something is in hand or being handled."""

    @property
    def deliveries(self) -> int:
        """Deliveries received so far."""


async def watch_drain(
    worker: Draining, queue: AbstractQueue, stopping: asyncio.Event, stop: Callable[[], None]
) -> None:
    """Call ``stop`` once the queue is empty and the worker idle (see the module docstring)."""
    quiet_checks = 0
    seen = -1
    while not stopping.is_set():
        await asyncio.sleep(POLL_S)
        if worker.busy or worker.deliveries != seen:
            seen = worker.deliveries
            quiet_checks = 0
            continue
        try:
            declared = await queue.declare()
        except BROKER_ERRORS as exc:
            raise_if_cancelling()
            log.warning("drain: could not read the queue depth: %r", exc)
            continue
        ready = declared.message_count or 0
        quiet_checks = quiet_checks + 1 if ready == 0 else 0
        if quiet_checks >= 2 and not worker.busy and worker.deliveries == seen:
            log.info(
                "drain: queue %s is empty, %d deliveries handled pid=%d",
                queue.name,
                seen,
                os.getpid(),
            )
            stop()
            return
