"""The load over HTTP: ``POST /publish`` to the API, a request per batch, 503s retried."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import httpx

from aggregator.events import CONTENT_TYPE
from producer.load import WireEvent
from producer.senders import Outcome, backoff_s

# The name the senders have always logged under.
log = logging.getLogger("producer.senders")

PUBLISH_PATH = "/publish"
# The longest pause between retries, whatever a server's Retry-After says.
MAX_RETRY_PAUSE_S = 60.0


class HttpSender:
    """POSTs each batch to the API: a JSON array, or the event itself for a batch of one.

    ``202`` confirms the batch. ``503`` (the broker did not take it) and transport errors are
    retried up to ``retries`` times, after ``Retry-After`` when the server sends one. Any
    other answer fails the batch at once: sending the same body again would not change it.
    """

    via = "http"

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 4,
        retries: int = 5,
        timeout_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        token: str | None = None,
    ) -> None:
        """``client``, when given, is shared by all requests and left open; otherwise the sender
        opens one client per request in flight. ``token``: an API key, sent as a bearer token.

        One connection per client, because httpcore's pool scans every connection it holds for
        each request and each response: with 64 in flight that scan, not the server, was the
        limit (about 3 ms of CPU per request).
        """
        self.target = base_url if client is None else str(client.base_url)
        self._retries = retries
        self._owned: list[httpx.AsyncClient] = []
        if client is None:
            ssl_context = httpx.create_ssl_context()  # loading CA certificates once, not per client
            self._owned = [
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=timeout_s,
                    limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    verify=ssl_context,
                    headers={"Authorization": f"Bearer {token}"} if token else None,
                )
                for _ in range(concurrency)
            ]
        # Last in, first out: the connection used last is the one most likely still open.
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        for idle in self._owned if client is None else [client] * concurrency:
            self._idle.put_nowait(idle)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in self._owned:
            await client.aclose()

    async def send(self, events: Sequence[WireEvent]) -> Outcome:
        client = await self._idle.get()
        try:
            return await self._send(client, events)
        finally:
            self._idle.put_nowait(client)

    async def _send(self, client: httpx.AsyncClient, events: Sequence[WireEvent]) -> Outcome:
        count = len(events)
        body = events[0].body if count == 1 else b"[" + b",".join(e.body for e in events) + b"]"
        retries = 0
        while True:
            pause: float | None = None
            try:
                response = await client.post(
                    PUBLISH_PATH, content=body, headers={"content-type": CONTENT_TYPE}
                )
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    accepted = _accepted(response, count)
                    return Outcome(
                        confirmed=accepted,
                        failed=count - accepted,
                        retries=retries,
                        error=None if accepted == count else f"only {accepted} accepted",
                    )
                reason = f"HTTP {response.status_code}: {_detail(response)}"
                if response.status_code != 503:
                    log.warning("POST %s of %d event(s) failed: %s", PUBLISH_PATH, count, reason)
                    return Outcome(confirmed=0, failed=count, retries=retries, error=reason)
                pause = retry_after_s(response.headers.get("retry-after"))
            if retries >= self._retries:
                log.warning(
                    "POST %s of %d event(s) failed after %d retries: %s",
                    PUBLISH_PATH,
                    count,
                    retries,
                    reason,
                )
                return Outcome(confirmed=0, failed=count, retries=retries, error=reason)
            retries += 1
            pause = backoff_s(retries) if pause is None else pause
            log.info(
                "POST %s of %d event(s): %s; retry %d of %d in %.1fs",
                PUBLISH_PATH,
                count,
                reason,
                retries,
                self._retries,
                pause,
            )
            await asyncio.sleep(pause)


def _accepted(response: httpx.Response, count: int) -> int:
    try:
        accepted = response.json()["accepted"]
    except (ValueError, KeyError, TypeError):
        return count  # a 2xx without the contract's body still means "taken"
    return min(accepted, count) if isinstance(accepted, int) else count


def _detail(response: httpx.Response) -> str:
    """One line saying why, from the contract's ``{"detail": ...}`` when there is one."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        detail = response.text or response.reason_phrase
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(part) for part in first.get("loc", []))
        more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
        detail = f"{where}: {first.get('msg')}{more}"
    return " ".join(str(detail).split())[:200]


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None when absent."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_PAUSE_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_PAUSE_S)
