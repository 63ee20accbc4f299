"""The load straight over AMQP: publishes to the settings' exchange, a confirm window per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq import spec

from aggregator.amqp import ConfirmsStalled, publish_pipelined
from aggregator.connection import BROKER_ERRORS, connect
from aggregator.settings import Settings
from aggregator.topology import declare_topology
from aggregator.urls import redacted
from producer.load import WireEvent
from producer.senders import Outcome, backoff_s

# The name the senders have always logged under.
log = logging.getLogger("producer.senders")


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
