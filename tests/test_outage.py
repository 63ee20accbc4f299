"""A broker outage with the API and the worker running as real processes on a private node.

Each test starts its own throwaway RabbitMQ node (never the machine's shared one), stops it under
the running processes and starts it again on the same data directory. The contract says: while
the broker is away ``POST /publish`` answers 503 with ``Retry-After`` within 5 s and never hangs,
``/readyz`` answers 503, and both processes keep running; after the broker's return ``/publish``
answers 202 again within 30 s and the worker consumes again without a restart (aio-pika's "zero
consumers after a broker restart" pitfall), so every event that got a 202 is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aggregator.settings import Settings
from tests.conftest import make_settings
from tests.support.broker import queue_depth
from tests.support.ledger import (
    PROMPT_S,
    RECOVERY_S,
    STOP_DEADLINE_S,
    Answer,
    Attempt,
    Ledger,
    assert_alive,
    assert_stored_exactly_once,
    cancel,
    current,
    keep_publishing,
    key_of,
    make_events,
    publish,
    publish_accepted,
    readyz_status,
    wait_stored,
)
from tests.support.processes import Process, free_port, start_api, start_worker
from tests.support.rabbit_node import RabbitNode
from tests.support.waiting import eventually

Diagnostics = Callable[[], str]

log = logging.getLogger(__name__)


def log_tails(node: RabbitNode, *processes: Process) -> str:
    parts = [
        f"--- python -m {p.module} (pid {p.pid}) ---\n{p.log_text()[-3000:]}" for p in processes
    ]
    with contextlib.suppress(OSError):
        parts.append(f"--- {node.node_log} ---\n{node.node_log.read_text()[-2000:]}")
    return "\n".join(parts)


@contextlib.contextmanager
def logs_on_failure(diagnostics: Diagnostics) -> Iterator[None]:
    """Attach the processes' and the node's logs to any assertion that fails in the block."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n\n{diagnostics()}") from exc


def outage_settings(node: RabbitNode, tmp_path: Path) -> Settings:
    return make_settings(
        node.url, tmp_path, host="127.0.0.1", port=free_port(), reconnect_interval_s=0.5
    )


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(300)
async def test_api_and_worker_ride_out_a_broker_restart(node: RabbitNode, tmp_path: Path) -> None:
    """Stop the broker under a steady stream of publishes, start it again, lose nothing."""
    settings = outage_settings(node, tmp_path)
    ledger = Ledger()
    async with contextlib.AsyncExitStack() as stack:
        worker = stack.enter_context(start_worker(settings, tmp_path / "worker.log"))
        api = start_api(settings, tmp_path / "api.log")
        stack.callback(api.close)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=api.base_url))
        stack.enter_context(logs_on_failure(lambda: log_tails(node, api, worker)))
        worker_pid = worker.pid

        # 1. Broker up: events go through the API and the worker stores them.
        await eventually(
            lambda: readyz_status(client), lambda s: s == 200, what="/readyz to answer 200"
        )
        await publish_accepted(client, make_events(60, "before"), ledger)
        await wait_stored(client, ledger.accepted)
        # A producer that keeps going through the outage, so publishes are in flight (awaiting
        # confirms) and deliveries unacked in the worker when the broker goes away.
        attempts: list[Attempt] = []
        done = asyncio.Event()
        streaming = asyncio.create_task(keep_publishing(client, ledger, attempts, done))
        stack.push_async_callback(cancel, streaming)
        await eventually(
            lambda: current(len(attempts)),
            lambda n: n >= 3,
            what="the steady producer to get going",
        )

        # 2. Broker gone: /publish says 503 + Retry-After within 5 s, each request promptly.
        stop_called = time.monotonic()
        await asyncio.to_thread(node.stop)
        stopped = time.monotonic()
        during: list[Answer] = []

        async def publish_during_outage(size: int = 1) -> Answer:
            answer = await publish(client, make_events(size, "down"), ledger)
            during.append(answer)
            return answer

        # poll /publish (a new event per try) until it refuses, with a deadline
        first_503 = await eventually(
            publish_during_outage,
            lambda a: a.status == 503,
            timeout=PROMPT_S,
            what="POST /publish to answer 503 after the broker stopped",
        )
        to_503_s = time.monotonic() - stopped
        assert to_503_s <= PROMPT_S, f"503 came {to_503_s:.2f}s after the broker stopped"
        assert first_503.retry_after is not None and int(first_503.retry_after) > 0, first_503
        # poll /readyz until it says not ready, with a deadline
        await eventually(
            lambda: readyz_status(client),
            lambda s: s == 503,
            timeout=PROMPT_S,
            what="/readyz to answer 503 after the broker stopped",
        )
        to_readyz_503_s = time.monotonic() - stopped

        # 3. While it is down, every try is refused (a 202 would be a lie), each one promptly.
        for size in (1, 2, 5, 10, 1, 3):
            await publish_during_outage(size)
        assert [a for a in during if a.status != 503] == [], during
        assert all(a.retry_after is not None for a in during), during
        assert max(a.elapsed_s for a in during) <= PROMPT_S, during
        # poll until the steady producer, too, has been refused a few times since the stop
        await eventually(
            lambda: current([a.answer for a in attempts if a.sent >= stopped]),
            lambda answers: sum(a.status == 503 for a in answers) >= 5,
            timeout=PROMPT_S,
            what="the steady producer to be refused while the broker is down",
        )
        assert not ledger.accepted & ledger.refused
        assert_alive(api, worker)

        # 4. Broker back on the same data dir: /publish answers 202 within 30 s, /readyz 200.
        start_called = time.monotonic()
        await asyncio.to_thread(node.start)
        started = time.monotonic()
        # poll /publish (a new event per try) until the broker takes it again, with a deadline
        await eventually(
            lambda: publish(client, make_events(1, "recovering"), ledger),
            lambda a: a.status == 202,
            timeout=RECOVERY_S,
            what="POST /publish to answer 202 after the broker came back",
        )
        to_202_s = time.monotonic() - started
        assert to_202_s <= RECOVERY_S, f"202 came {to_202_s:.2f}s after the broker returned"
        assert await readyz_status(client) == 200
        await publish_accepted(client, make_events(60, "after"), ledger)
        # poll until the steady producer has been taken again too, then stop it
        await eventually(
            lambda: current([a for a in attempts if a.sent > started]),
            lambda after: any(a.answer.status == 202 for a in after),
            timeout=RECOVERY_S,
            what="the steady producer to get a 202 after the broker came back",
        )
        done.set()
        await streaming
        down = [a.answer for a in attempts if a.sent >= stopped and a.answered <= start_called]
        assert down, "the steady producer made no request while the broker was down"
        assert [a for a in down if a.status != 503] == [], down

        # 5. The same worker process consumes again: every 202'd event stored exactly once.
        final = await assert_stored_exactly_once(client, ledger, may_store_refused=True)
        assert_alive(api, worker)
        assert worker.pid == worker_pid
        # Having ridden out the outage, both still stop cleanly on SIGTERM (exit 0 within 10 s).
        for process in (api, worker):
            process.signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, STOP_DEADLINE_S)
            assert code == 0, f"python -m {process.module} exited {code} on SIGTERM"
        log.info(
            "outage timings: stop() took %.2fs; /publish 503 %.2fs and /readyz 503 %.2fs after "
            "it returned (slowest outage request %.2fs); /publish 202 %.2fs after start() "
            "returned; steady producer: %d requests (slowest %.2fs), %d while down; "
            "%d events accepted, %d refused (%d of those stored anyway); stats %s",
            stopped - stop_called,
            to_503_s,
            to_readyz_503_s,
            max(a.elapsed_s for a in during),
            to_202_s,
            len(attempts),
            max(a.answer.elapsed_s for a in attempts),
            len(down),
            len(ledger.accepted),
            len(ledger.refused),
            final["unique_processed"] - len(ledger.accepted),
            final,
        )


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(300)
async def test_events_confirmed_with_no_worker_survive_a_broker_restart(
    node: RabbitNode, tmp_path: Path
) -> None:
    """The API alone declares the durable quorum queue; what it confirmed outlives a restart."""
    settings = outage_settings(node, tmp_path)
    ledger = Ledger()
    events = make_events(120, "held")
    async with contextlib.AsyncExitStack() as stack:
        api = start_api(settings, tmp_path / "api.log")
        stack.callback(api.close)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=api.base_url))
        processes: list[Process] = [api]
        stack.enter_context(logs_on_failure(lambda: log_tails(node, *processes)))

        await eventually(
            lambda: readyz_status(client), lambda s: s == 200, what="/readyz to answer 200"
        )
        await publish_accepted(client, events, ledger)
        assert ledger.accepted == {key_of(event) for event in events}

        async def depth() -> int:
            return await queue_depth(settings, settings.queue)

        # poll the queue depth until every confirmed event shows as ready, with a deadline
        await eventually(depth, lambda n: n == len(events), what="every event in the queue")

        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(node.start)
        # The quorum queue and its persistent messages came back with the node's data dir.
        await eventually(depth, lambda n: n == len(events), what="every event held over")

        worker = stack.enter_context(start_worker(settings, tmp_path / "worker.log"))
        processes.append(worker)
        final = await assert_stored_exactly_once(client, ledger, may_store_refused=False)
        assert final["received"] == len(events), final
        assert final["duplicate_dropped"] == 0, final
        # poll the queue until the worker's acks have emptied it, with a deadline
        await eventually(depth, lambda n: n == 0, what="the queue to be empty once all is stored")
        # The API reconnected by itself too.
        await eventually(
            lambda: readyz_status(client), lambda s: s == 200, what="/readyz 200 after restart"
        )
        assert_alive(api, worker)
