"""A message that kills the process every time: the delivery limit dead-letters it, and only it.

The worker processes redeliveries one at a time, in an order that puts different companions
ahead of the killer after each crash (worker/batching.py), so the quorum queue's count of
deliveries held at a crash reaches the limit for the killer alone.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from aggregator.store import SqliteStore
from tests.conftest import make_settings
from tests.support.broker import delete_topology, event_body, get_dead_letters, publish_raw
from tests.support.exactly_once import assert_stored_exactly_once, make_events, wait_for_exit, wire
from tests.support.processes import fault_env, start_worker

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DELIVERY_LIMIT = 3


@pytest.mark.timeout(240)
async def test_a_message_that_kills_every_worker_is_dead_lettered_alone(
    amqp_url: str, tmp_path: Path
) -> None:
    settings = make_settings(amqp_url, tmp_path, delivery_limit=DELIVERY_LIMIT)
    events = make_events(300, "around")
    killer = event_body("the-killer", "app.log")
    messages = wire(events)
    messages.insert(150, ("app.log", wire([killer])[0][1]))
    store = await SqliteStore.open(settings.db_path)
    try:
        await publish_raw(settings, messages)
        crashes = 0
        for run in range(DELIVERY_LIMIT + 6):
            log = tmp_path / f"worker-{run}.log"
            with start_worker(
                settings, log, "--drain", env=fault_env(kill_on="the-killer")
            ) as worker:
                code = await wait_for_exit(worker, 60)
            if code == 0:
                break
            assert code == -signal.SIGKILL, log.read_text()[-3000:]
            crashes += 1
        else:
            raise AssertionError(f"still crashing after {crashes} runs")
        # The first crash, then one per delivery the limit allows.
        assert DELIVERY_LIMIT + 1 <= crashes <= DELIVERY_LIMIT + 3, crashes

        [dead] = await get_dead_letters(settings, expected=1)
        assert dead.body == wire([killer])[0][1]
        death = dead.headers["x-death"]
        assert isinstance(death, list) and isinstance(death[0], dict)
        assert death[0]["reason"] == "delivery_limit"
        await assert_stored_exactly_once(store, settings, events)
    finally:
        await store.close()
        await delete_topology(settings)
