"""Where the load goes: ``POST /publish`` over HTTP, or the exchange straight over AMQP.

A sender takes one batch (a request, or a confirm window) and says what became of each of its
events: confirmed, or failed with a reason. Nothing is dropped silently. Both retry what may
succeed later (a 503, a lost connection, a nack); the aggregator's dedup makes that safe.

The two senders are :class:`producer.http_sender.HttpSender` and
:class:`producer.amqp_sender.AmqpSender`; this module holds what they share.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from producer.load import WireEvent


@dataclass(frozen=True)
class Outcome:
    """What became of one batch: each event is confirmed or failed; ``error`` says why."""

    confirmed: int
    failed: int = 0
    retries: int = 0
    error: str | None = None

    @property
    def events(self) -> int:
        return self.confirmed + self.failed


class Sender(Protocol):
    """Sends one batch and waits until each event is confirmed or given up on.

    Used as ``async with sender:``, which connects (and for AMQP declares the topology).
    """

    @property
    def via(self) -> str: ...

    @property
    def target(self) -> str: ...

    async def send(self, events: Sequence[WireEvent]) -> Outcome: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def backoff_s(retry: int) -> float:
    """The pause before retry ``retry`` (from 1) when the server named none: 0.2 s doubling."""
    return min(0.2 * 2.0 ** (retry - 1), 5.0) * random.uniform(0.75, 1.25)
