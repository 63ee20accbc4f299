"""Opening the robust broker connection both processes use, with a bounded first connect."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from aggregator.errors import BrokerUnreachable
from aggregator.settings import Settings
from aggregator.tasks import raise_if_cancelling
from aggregator.urls import redacted

log = logging.getLogger(__name__)

# Errors that mean "the broker did not do it": connection or channel loss, nack, return, timeout.
BROKER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError)


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


async def connect(
    settings: Settings, *, client_name: str, give_up_after_s: float | None
) -> AbstractRobustConnection:
    """A robust connection; the first attempt is retried until ``give_up_after_s`` (None: forever).

    ``connect_robust`` reconnects by itself after a loss, but its first connect raises when the
    broker is not up yet, which is normal when containers start in any order.
    """
    started = time.monotonic()
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = await aio_pika.connect_robust(
                settings.amqp_url,
                reconnect_interval=settings.reconnect_interval_s,
                client_properties={"connection_name": client_name},
            )
        except CONNECTION_EXCEPTIONS as exc:
            raise_if_cancelling()
            waited = time.monotonic() - started
            if give_up_after_s is not None and waited + delay > give_up_after_s:
                raise BrokerUnreachable(
                    f"cannot reach the broker at {redacted(settings.amqp_url)} after "
                    f"{attempt} attempt(s) in {waited:.1f}s: {exc!r}"
                ) from exc
            log.warning(
                "broker at %s not reachable (attempt %d): %r; retrying in %.1fs",
                redacted(settings.amqp_url),
                attempt,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        log.info("connected to broker at %s as %s", redacted(settings.amqp_url), client_name)
        _log_lifecycle(connection, client_name)
        return connection


def _log_lifecycle(connection: AbstractRobustConnection, client_name: str) -> None:
    """One line when the connection is lost and one when it is back, not one per attempt."""
    lost = False

    def on_close(_: Any, exc: BaseException | None = None) -> None:
        nonlocal lost
        # A close we asked for arrives as None or CancelledError; anything else is a loss.
        if exc is None or isinstance(exc, asyncio.CancelledError) or lost:
            return
        lost = True
        log.warning("%s lost its broker connection: %r; reconnecting", client_name, exc)

    def on_reconnect(_: Any) -> None:
        nonlocal lost
        lost = False
        log.info("%s reconnected to the broker", client_name)

    connection.close_callbacks.add(on_close)
    connection.reconnect_callbacks.add(on_reconnect)
