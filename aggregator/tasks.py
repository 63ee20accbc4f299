"""Background tasks that stop when told: cancellation is never swallowed, every wait has an end.

aiormq turns a cancel that lands while a channel opens into ``ConnectionChannelError``, so a task
that catches broker errors around its loop can eat its own cancellation and run forever; and a
shutdown that awaits such a task then hangs while the process looks healthy.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def raise_if_cancelling() -> None:
    """In an ``except`` for broad errors: re-raise as a cancel if this task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[object] | None, *, timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait for it at most ``timeout`` seconds; never raises its outcome."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.error("task %s did not stop within %.0fs after a cancel; leaving it", task, timeout)
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("task %s ended with %r", task.get_name(), task.exception())
