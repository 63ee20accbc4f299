"""Where the load goes: ``POST /publish`` over HTTP, or the exchange straight over AMQP.

A sender takes one batch (a request, or a confirm window) and says what became of each of its
events: confirmed, or failed with a reason. Nothing is dropped silently. Both retry what may
succeed later (a 503, a lost connection, a nack); the aggregator's dedup makes that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import httpx
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq import spec

from aggregator.amqp import ConfirmsStalled, publish_pipelined
from aggregator.connection import BROKER_ERRORS, connect
from aggregator.events import CONTENT_TYPE
from aggregator.settings import Settings
from aggregator.topology import declare_topology
from aggregator.urls import redacted
from producer.load import WireEvent

log = logging.getLogger(__name__)

PUBLISH_PATH = "/publish"
# The longest pause between retries, whatever a server's Retry-After says.
MAX_RETRY_PAUSE_S = 60.0


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


@dataclass(frozen=True)
class _Failure:
    event: WireEvent
    reason: str
    retriable: bool


class AmqpSender:
    """Publishes straight to the settings' exchange, as the contract's wire format says.

    Declares the topology first (as every producer must, so nothing confirmed is unroutable).
    A window's publishes are all written, then their confirms awaited together. A nack, a
    lost connection or a missing confirm is retried up to ``retries`` times; a message the
    broker returns as unroutable is not, since no queue will appear for it by waiting.
    """

    via = "amqp"

    def __init__(
        self,
        settings: Settings,
        *,
        retries: int = 5,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.target = f"{redacted(settings.amqp_url)} exchange {settings.exchange!r}"
        self._settings = settings
        self._retries = retries
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> Self:
        """Connect, open a confirm-mode channel and declare the topology.

        Raises :class:`aggregator.amqp.BrokerUnreachable` when no broker answers in time.
        """
        connection = await connect(
            self._settings,
            client_name="aggregator-producer",
            give_up_after_s=self._connect_timeout_s,
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(channel, self._settings)
        except BaseException:
            with contextlib.suppress(*BROKER_ERRORS):
                await connection.close()
            raise
        self._connection, self._channel = connection, channel
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await self._connection.close()
        self._connection = self._channel = None

    async def send(self, events: Sequence[WireEvent]) -> Outcome:
        pending = list(events)
        confirmed = failed = retries = 0
        error: str | None = None
        while pending:
            failures = await self._publish_window(pending)
            confirmed += len(pending) - len(failures)
            pending = []
            for failure in failures:
                if failure.retriable and retries < self._retries:
                    pending.append(failure.event)
                else:
                    failed += 1
                    error = error or failure.reason
            if pending:
                retries += 1
                pause = backoff_s(retries)
                log.info(
                    "%d of %d publish(es) not confirmed: %s; retry %d of %d in %.1fs",
                    len(pending),
                    len(events),
                    failures[0].reason,
                    retries,
                    self._retries,
                    pause,
                )
                await asyncio.sleep(pause)
        if failed:
            log.warning(
                "%d of %d publish(es) failed after %d retries: %s",
                failed,
                len(events),
                retries,
                error,
            )
        return Outcome(confirmed=confirmed, failed=failed, retries=retries, error=error)

    async def _publish_window(self, events: Sequence[WireEvent]) -> list[_Failure]:
        """Publish every event, then await all the confirms; the ones that did not come."""
        if self._channel is None:
            raise RuntimeError("AmqpSender is used outside `async with`")
        exchange = self._settings.exchange
        try:
            # As the API's publisher does (the channel underneath is fetched per window, so a
            # reconnect is picked up).
            results = await publish_pipelined(
                self._channel,
                exchange,
                ((e.topic, e.body, e.event_id) for e in events),
                stall_timeout=self._timeout_s,
            )
        except ConfirmsStalled as exc:
            return [_Failure(event, str(exc), retriable=True) for event in events]
        except BROKER_ERRORS as exc:
            return [_Failure(event, _describe(exc), retriable=True) for event in events]
        failures = []
        for event, result in zip(events, results, strict=True):
            if isinstance(result, spec.Basic.Ack):
                continue
            if isinstance(result, PublishError):
                reason, retriable = "returned by the broker as unroutable", False
            elif isinstance(result, DeliveryError):
                reason, retriable = "nacked by the broker", True
            elif isinstance(result, BaseException):
                reason, retriable = _describe(result), True
            else:
                reason, retriable = f"unexpected confirm {result!r}", True
            failures.append(_Failure(event, reason, retriable))
        return failures


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
