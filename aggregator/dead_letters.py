"""The dead-letter queue over HTTP: look at what is there, and move it back after a fix.

Peeking takes up to N messages with ``basic.get`` and gives them all back with one
``basic.nack(requeue=True, multiple=True)``: a return, not a failure. RabbitMQ 4.3 and later do
not count it towards a quorum queue's delivery limit; 3.x quorum queues have no limit unless one
is set (the dead-letter queue has none); 4.0-4.2 count it, and their default limit is 20, so on
those versions a dead letter looked at twenty times is dropped (README.md says what to do).
Replaying moves each message: published to the main exchange under its original routing key,
confirmed, then acked off the dead-letter queue, one at a time; a crash between the two
publishes it twice, which the dedup absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel

from aggregator.amqp.queues import Got, get, give_back, move
from aggregator.logs import one_line
from aggregator.topology import ERROR_HEADER

REPLAYED_HEADER = "x-replayed-from"
# Headers of a dead letter that describe its death, not the message: not carried on a replay.
_DEATH_HEADERS = frozenset(
    {ERROR_HEADER, "x-death", "x-first-death-reason", "x-first-death-queue",
     "x-first-death-exchange", "x-last-death-reason", "x-last-death-queue",
     "x-last-death-exchange", "x-original-exchange", "x-original-routing-key"}
)  # fmt: skip


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as an operator wants to see it."""

    routing_key: str  # where it was first published
    reason: str  # x-error (refused by the worker), or x-death's reason (e.g. delivery_limit)
    deaths: int  # how many times it was dead-lettered
    message_id: str | None
    body: str  # as UTF-8 text, with what is not UTF-8 replaced


def describe(got: Got) -> DeadLetter:
    deaths = [d for d in got.headers.get("x-death") or [] if isinstance(d, dict)]
    routing_key = got.headers.get("x-original-routing-key")
    if not isinstance(routing_key, str):
        keys = deaths[0].get("routing-keys") if deaths else None
        routing_key = str(keys[0]) if isinstance(keys, list) and keys else got.routing_key
    reason: Any = got.headers.get(ERROR_HEADER)
    if not isinstance(reason, str):
        reason = str(deaths[0].get("reason", "unknown")) if deaths else "unknown"
    return DeadLetter(
        routing_key=routing_key,
        reason=one_line(reason, 1000),
        deaths=sum(int(d.get("count", 1)) for d in deaths) or 1,
        message_id=got.message_id,
        body=got.body.decode("utf-8", errors="replace"),
    )


async def peek(channel: AbstractChannel, queue: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead letters from the head of ``queue``, all given back."""
    taken: list[Got] = []
    try:
        taken = await get(channel, queue, limit)
    finally:
        await give_back(channel, taken)
    return [describe(got) for got in taken]


async def replay(
    channel: AbstractChannel, queue: str, exchange: str, limit: int, *, timeout: float
) -> int:
    """Move up to ``limit`` dead letters back to ``exchange``; how many moved.

    Stops at the first one the broker did not confirm (it stays in the queue).
    """
    moved = 0
    while moved < limit:
        taken = await get(channel, queue, 1)
        if not taken:
            break
        letter = describe(taken[0])
        headers = {k: v for k, v in taken[0].headers.items() if k not in _DEATH_HEADERS}
        headers[REPLAYED_HEADER] = queue
        if not await move(
            channel,
            taken[0],
            exchange=exchange,
            routing_key=letter.routing_key,
            headers=headers,
            timeout=timeout,
        ):
            break
        moved += 1
    return moved
