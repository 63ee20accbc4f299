"""What every publishing route does once it holds its events: the key's topics, the rate limit,
then the broker's confirms. ``/publish``, ``/v1/logs`` and ``/ingest/{topic}`` differ only in how
a body becomes events; from here on they are the same path, with the same refusals."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import Request

from aggregator.events import Event
from aggregator.metrics import ApiMetrics
from api.deps import Caller
from api.errors import RateLimited
from api.limits import RateLimiter, retry_after
from api.publisher import Publisher


async def publish_events(request: Request, caller: Caller, events: Sequence[Event]) -> None:
    """Publish ``events`` and return once the broker confirmed every one, or refuse them all:
    403 for a topic outside the key's patterns (the first one named), 429 past the rate limit,
    503 when the broker does not confirm. Nothing is published unless all may be."""
    if not events:
        return
    caller.check_topics(list(dict.fromkeys(event.topic for event in events)))
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is not None:
        wait = limiter.take(caller.client, len(events))
        if wait is not None:
            raise RateLimited(
                f"past {limiter.rate:g} events/s for {caller.client!r}; "
                f"retry in {retry_after(wait)}s",
                headers={"Retry-After": retry_after(wait)},
            )
    publisher: Publisher = request.app.state.publisher
    metrics: ApiMetrics = request.app.state.metrics
    started = time.perf_counter()
    await publisher.publish(events, publisher=caller.publisher, on_handed=metrics.published.inc)
    metrics.confirm_seconds.observe(time.perf_counter() - started)
    metrics.confirmed.inc(len(events))
