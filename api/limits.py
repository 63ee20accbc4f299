"""Limits that hold under load: events per second per key, and requests in flight.

Past either limit the API answers with ``Retry-After``, which log shippers (Fluent Bit, Vector,
OpenTelemetry exporters) honour on 429 and 503; they drop other 4xx.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RateLimiter:
    """A token bucket per client: ``rate`` events a second, bursts of up to one second's worth.

    A request takes as many tokens as it carries events, all or none. A batch larger than the
    bucket can never pass at once: it is refused with the time a bucket of its size would take,
    so a client that splits it gets through.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, as of)

    def take(self, client: str, events: int) -> float | None:
        """None when the events may pass (and are counted), else seconds to wait."""
        now = time.monotonic()
        tokens, as_of = self._buckets.get(client, (self.rate, now))
        tokens = min(self.rate, tokens + (now - as_of) * self.rate)
        if events <= tokens:
            self._buckets[client] = (tokens - events, now)
            return None
        self._buckets[client] = (tokens, now)
        return (events - tokens) / self.rate

    def forget_idle(self, idle_s: float = 600.0) -> None:
        """Drop buckets not used for ``idle_s`` (they would be full again anyway)."""
        cutoff = time.monotonic() - idle_s
        self._buckets = {c: b for c, b in self._buckets.items() if b[1] >= cutoff}


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class ConcurrencyLimit:
    """ASGI middleware: past ``limit`` HTTP requests in flight, answer 503 with Retry-After at
    once, instead of letting requests pile up behind each other. Probes (``exempt`` paths:
    health, readiness, metrics) always pass, so a busy API is not mistaken for a dead one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        exempt: frozenset[str],
        on_refused: Callable[[], object] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.on_refused = on_refused
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if self.on_refused is not None:
                self.on_refused()
            await _busy(send, self.limit)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _busy(send: Send, limit: int) -> None:
    body = orjson.dumps({"detail": f"more than {limit} requests in flight; retry shortly"})
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
