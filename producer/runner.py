"""Sending a load: batches on a schedule, a bounded number in flight, every outcome counted.

The rate limiter schedules by absolute deadlines: the batch that ends with event ``n`` is due
``n / rate`` seconds after the start. A late batch goes at once and the next ones keep their own
deadlines, so the average rate holds over the run instead of drifting with each sleep's error.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from producer.load import LoadSpec, WireEvent, wire_events
from producer.senders import Outcome, Sender


@dataclass(frozen=True)
class Summary:
    """The figures of one run, as ``--json`` prints them."""

    via: str
    target: str
    count: int
    sent: int
    confirmed: int
    failed: int
    duplicates_intended: int
    distinct: int
    retries: int
    requests: int
    elapsed_s: float
    events_per_s: float
    # Wall-clock (Unix) times, to line the run up with other processes' figures.
    started_at: float
    finished_at: float
    batch: int
    concurrency: int
    rate: float
    seed: int
    # Per request (HTTP) or confirm window (AMQP), from when it was due to its last answer.
    latency_ms: dict[str, float] | None
    errors: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def all_confirmed(self) -> bool:
        return self.confirmed == self.count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadRunner:
    """Sends the load ``spec`` describes through ``sender``: ``batch`` events per request or
    confirm window, at most ``concurrency`` of them in flight.

    ``rate`` is the target in events per second; 0 sends as fast as the sender allows.
    ``on_done`` is called with each batch's outcome (the progress bar). The events are built
    and serialised here, before the clock starts.
    """

    def __init__(
        self,
        spec: LoadSpec,
        sender: Sender,
        *,
        batch: int,
        concurrency: int,
        rate: float = 0.0,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1 or rate < 0:
            raise ValueError("batch and concurrency must be at least 1, rate at least 0")
        self._spec = spec
        self._events = wire_events(spec)
        self._sender = sender
        self._batch = batch
        self._concurrency = concurrency
        self._rate = rate
        self._on_done = on_done
        self._sent = self._confirmed = self._failed = self._retries = self._requests = 0
        self._errors: Counter[str] = Counter()
        self._latencies: list[float] = []
        self._started = self._last_done = 0.0
        self._started_at = 0.0

    async def run(self) -> Summary:
        if self._requests:
            raise RuntimeError("a LoadRunner runs once; make another for another run")
        slots = asyncio.Semaphore(self._concurrency)
        self._started_at = time.time()
        self._started = self._last_done = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for first in range(0, len(self._events), self._batch):
                batch = self._events[first : first + self._batch]
                if self._rate > 0:
                    due = self._started + (first + len(batch)) / self._rate
                    ahead = due - time.monotonic()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                    await slots.acquire()
                else:
                    await slots.acquire()
                    due = time.monotonic()
                self._sent += len(batch)
                self._requests += 1
                group.create_task(self._send(batch, due, slots))
        return self.summary()

    async def _send(self, batch: Sequence[WireEvent], due: float, slots: asyncio.Semaphore) -> None:
        try:
            outcome = await self._sender.send(batch)
        finally:
            slots.release()
        self._last_done = time.monotonic()
        self._latencies.append(self._last_done - due)
        self._confirmed += outcome.confirmed
        self._failed += outcome.failed
        self._retries += outcome.retries
        if outcome.failed:
            self._errors[outcome.error or "unknown"] += outcome.failed
        if self._on_done is not None:
            self._on_done(outcome)

    def summary(self, *, interrupted: bool = False) -> Summary:
        """The figures so far; ``interrupted`` marks a run stopped before its end."""
        finished = time.monotonic() if interrupted else self._last_done
        elapsed = max(finished - self._started, 1e-9)
        return Summary(
            via=self._sender.via,
            target=self._sender.target,
            count=len(self._events),
            sent=self._sent,
            confirmed=self._confirmed,
            failed=self._failed,
            duplicates_intended=self._spec.duplicates,
            distinct=self._spec.distinct,
            retries=self._retries,
            requests=self._requests,
            elapsed_s=round(elapsed, 4),
            events_per_s=round(self._confirmed / elapsed, 1),
            started_at=self._started_at,
            finished_at=self._started_at + elapsed,
            batch=self._batch,
            concurrency=self._concurrency,
            rate=self._rate,
            seed=self._spec.seed,
            latency_ms=latency_ms(self._latencies),
            errors=dict(self._errors.most_common()),
            interrupted=interrupted,
        )


def latency_ms(seconds: Sequence[float]) -> dict[str, float] | None:
    """p50, p99 and max (nearest rank) in milliseconds; None when nothing was measured."""
    if not seconds:
        return None
    ordered = sorted(seconds)

    def rank(q: float) -> float:
        return round(ordered[max(math.ceil(q * len(ordered)) - 1, 0)] * 1000, 2)

    return {"p50": rank(0.50), "p99": rank(0.99), "max": round(ordered[-1] * 1000, 2)}
