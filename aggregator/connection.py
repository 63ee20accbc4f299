"""The broker connection both processes use: several nodes, a bounded first connect, failover.

aio-pika's robust connection reconnects by itself, but to the one URL it was given (aio-pika
issue #141, open since 2018), and its first connect raises when the broker is not up yet.
:class:`FailoverConnection` tries every URL of ``AGG_AMQP_URL`` in turn on each attempt,
starting after the node it lost; :func:`connect` retries the first connect within a bound.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import aio_pika
from aio_pika import RobustConnection
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.exceptions import AuthenticationError, ProbableAuthenticationError
from yarl import URL

from aggregator.errors import BrokerUnreachable
from aggregator.settings import Settings
from aggregator.tasks import raise_if_cancelling
from aggregator.urls import redacted

log = logging.getLogger(__name__)

# Errors that mean "the broker did not do it": connection or channel loss, nack, return, timeout.
BROKER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError)
# One TCP + AMQP handshake; a node whose host is cut off answers nothing, so this bounds how
# long a try on it holds up the next node.
ATTEMPT_TIMEOUT_S = 5.0


class _Closable(Protocol):
    def close(self) -> Awaitable[Any]: ...


async def close_quietly(resource: _Closable | None, *, timeout: float = 5.0) -> None:
    """Close a connection or channel; a broker error or a slow close is not worth raising.

    A cancel still propagates, also one that aiormq turned into a broker error.
    """
    if resource is None:
        return
    try:
        async with asyncio.timeout(timeout):
            await resource.close()
    except BROKER_ERRORS as exc:  # a TimeoutError among them
        log.debug("close of %r failed: %r", resource, exc)
    # aio-pika's close can end normally after taking a cancel, or raise it as a broker error.
    raise_if_cancelling()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for amqps:// nodes (None when no URL asks for TLS)."""
    if not any(url.startswith("amqps://") for url in settings.amqp_urls):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None
    )
    if settings.amqp_cert_file is not None:
        context.load_cert_chain(
            str(settings.amqp_cert_file),
            str(settings.amqp_key_file) if settings.amqp_key_file else None,
        )
    return context


def _with_heartbeat(url: str, heartbeat_s: int) -> URL:
    parsed = URL(url)
    if "heartbeat" in parsed.query:
        return parsed  # the URL's own setting wins
    return parsed.update_query(heartbeat=heartbeat_s)


class FailoverConnection(RobustConnection):
    """A robust connection over several broker URLs: each attempt tries them all in turn.

    It starts at the node after the one it lost, so a node that died (or whose host is cut off)
    costs at most one attempt timeout before the next node answers. Channels, their QoS and the
    declared topology are restored on the new node by aio-pika, as after any reconnect.
    """

    def __init__(self, urls: Sequence[URL], **kwargs: Any) -> None:
        super().__init__(urls[0], **kwargs)
        self._urls = list(urls)
        self._index = 0

    @property
    def node(self) -> str:
        """The host:port this connection is (or was last) on."""
        return f"{self.url.host}:{self.url.port}"

    # aio-pika 10's private hook for one connect attempt (pinned <11; tests cover failover).
    async def _RobustConnection__connect_transport(self) -> None:  # noqa: N802
        failures: list[BaseException] = []
        for _ in self._urls:
            self.url = self._urls[self._index]
            try:
                await RobustConnection._RobustConnection__connect_transport(self)  # type: ignore[attr-defined]
                return
            except CONNECTION_EXCEPTIONS as exc:
                failures.append(exc)
                self._index = (self._index + 1) % len(self._urls)
        raise failures[-1]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Also called when an attempt fails (no transport yet): the loop above moves on then.
        if not self._close_called and self.transport is not None:
            # An established connection's node went away: start the next attempt after it.
            self._index = (self._index + 1) % len(self._urls)
        await super()._on_connection_close(closing)


async def connect(
    settings: Settings, *, client_name: str, give_up_after_s: float | None
) -> FailoverConnection:
    """A failover connection; the first attempt is retried until ``give_up_after_s`` (None:
    forever), since containers start in any order."""
    urls = [_with_heartbeat(url, settings.heartbeat_s) for url in settings.amqp_urls]
    context = tls_context(settings)
    started = time.monotonic()
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        connection = FailoverConnection(
            urls,
            reconnect_interval=settings.reconnect_interval_s,
            client_properties={"connection_name": client_name},
            ssl_context=context,
        )
        try:
            await connection.connect(timeout=ATTEMPT_TIMEOUT_S)
        except BaseException as exc:
            # Closed whatever happened: a robust connection left open keeps a reconnect task
            # that swallows cancellation, and it would hold the process's exit up forever
            # (a SIGTERM during the first connect did exactly that).
            await _discard(connection)
            if not isinstance(exc, CONNECTION_EXCEPTIONS):
                raise
            raise_if_cancelling()
            waited = time.monotonic() - started
            if give_up_after_s is not None and waited + delay > give_up_after_s:
                raise BrokerUnreachable(
                    f"cannot reach the broker at {redacted(settings.amqp_url)} after "
                    f"{attempt} attempt(s) in {waited:.1f}s: {exc!r}"
                ) from exc
            # Said once, not once per attempt; a refused login as such (a wrong password will
            # not fix itself, but a user being created meanwhile might).
            log.log(
                logging.WARNING if attempt == 1 else logging.DEBUG,
                "%s; retrying until it answers",
                _why_unreachable(settings.amqp_url, exc),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        log.info(
            "connected to broker node %s as %s%s",
            connection.node,
            client_name,
            f" after {attempt} attempts" if attempt > 1 else "",
        )
        _log_lifecycle(connection, client_name)
        return connection


def _why_unreachable(urls: str, exc: BaseException) -> str:
    if isinstance(exc, ProbableAuthenticationError | AuthenticationError):
        users = sorted({URL(url).user or "guest" for url in urls.split(",")})
        return (
            f"the broker refused the login of user {', '.join(users)}: check the user and"
            " password in AGG_AMQP_URL"
        )
    return f"the broker at {redacted(urls)} does not answer: {exc!r}"


async def _discard(connection: FailoverConnection) -> None:
    """Close a connection that never opened; a second cancel still interrupts it."""
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
            await connection.close()
    except BROKER_ERRORS as exc:
        log.debug("closing a connection that never opened: %r", exc)


async def connect_once(settings: Settings) -> AbstractConnection:
    """A plain connection to the first node that answers (for short-lived side work)."""
    failures: list[BaseException] = []
    context = tls_context(settings)
    for url in settings.amqp_urls:
        try:
            return await aio_pika.connect(url, timeout=ATTEMPT_TIMEOUT_S, ssl_context=context)
        except CONNECTION_EXCEPTIONS as exc:
            raise_if_cancelling()
            failures.append(exc)
    raise failures[-1]


def _log_lifecycle(connection: FailoverConnection, client_name: str) -> None:
    """One line when the connection is lost and one when it is back, not one per attempt."""
    lost = False

    def on_close(_: Any, exc: BaseException | None = None) -> None:
        nonlocal lost
        # A close we asked for arrives as None or CancelledError; anything else is a loss.
        if exc is None or isinstance(exc, asyncio.CancelledError) or lost:
            return
        lost = True
        log.warning("%s lost broker node %s: %r; reconnecting", client_name, connection.node, exc)

    def on_reconnect(_: Any) -> None:
        nonlocal lost
        lost = False
        log.info("%s reconnected, to broker node %s", client_name, connection.node)

    connection.close_callbacks.add(on_close)
    connection.reconnect_callbacks.add(on_reconnect)
