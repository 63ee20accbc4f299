"""A broker that stops confirming, on a private node: the API waits for confirms while they keep
coming, and answers 503 once they stop (a memory alarm blocks publishers, closing nothing)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.support.ledger import make_events
from tests.support.rabbit_node import RabbitNode
from tests.support.running import api_client
from tests.support.waiting import eventually

log = logging.getLogger(__name__)


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_a_broker_that_stops_confirming_gets_a_503_and_a_slow_one_does_not(
    node: RabbitNode, tmp_path: Path
) -> None:
    """Confirms are awaited while they keep coming; a broker that stops answering is a 503.

    The API runs in-process against the private node; a memory alarm (a watermark of nearly
    zero) makes RabbitMQ block publishers, so confirms stop without the connection closing.
    """
    settings = make_settings(node.url, tmp_path, confirm_timeout_s=2.0)
    async with api_client(settings) as client:
        # A fresh node's quorum queue on a loaded machine can take more than the stall timeout
        # to confirm its very first message; that is not what this test is about.
        await eventually(
            lambda: client.post("/publish", json=make_events(1, "warm-up"), timeout=30),
            lambda response: response.status_code == 202,
            timeout=60,
            what="a first 202 from the node",
        )
        # The whole documented batch limit, confirmed under a 2 s stall timeout.
        batch = make_events(settings.max_batch, "full-batch")
        started = time.monotonic()
        response = await client.post("/publish", json=batch, timeout=120)
        assert response.status_code == 202, response.text
        log.info("%d events confirmed in %.2fs", len(batch), time.monotonic() - started)

        assert node.ctl("set_vm_memory_high_watermark", "0.0000001").returncode == 0
        try:
            started = time.monotonic()
            response = await client.post("/publish", json=make_events(5, "blocked"), timeout=30)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert "then none for 2s" in response.json()["detail"]
            assert response.headers["retry-after"].isdigit()
            assert took < 6, took
        finally:
            node.ctl("set_vm_memory_high_watermark", "0.4")
