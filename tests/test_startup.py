"""Containers start in any order: the API and the worker come up before the broker does."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.broker import event_body
from tests.support.processes import free_port, start_api, start_worker
from tests.support.rabbit_node import RabbitNode
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.mark.timeout(180)
async def test_api_and_worker_started_before_the_broker(tmp_path: Path) -> None:
    with RabbitNode(tmp_path / "node") as node:
        node.stop()  # the node exists (its ports are known) but is down
        settings = make_settings(
            node.url, tmp_path, port=free_port(), connect_timeout_s=120, exchange="logs", queue="q"
        )
        with (
            start_api(settings, tmp_path / "api.log") as api,
            start_worker(settings, tmp_path / "worker.log") as worker,
        ):
            async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["broker"] != "ok"
                refused = await client.post("/publish", json=event_body("early"))
                assert refused.status_code == 503
                assert refused.headers["retry-after"].isdigit()

                node.start()
                await eventually(
                    lambda: client.get("/readyz"),
                    lambda r: r.status_code == 200,
                    timeout=30,
                    what="/readyz 200 once the broker is up",
                )
                accepted = await client.post("/publish", json=event_body("late"))
                assert accepted.status_code == 202
                stats = await eventually(
                    lambda: client.get("/stats"),
                    lambda r: r.json()["unique_processed"] == 1,
                    timeout=60,
                    what="the worker, which kept retrying its first connect, to store the event",
                )
                assert stats.json()["received"] == 1
            assert worker.popen.poll() is None, worker.log_text()
            assert "does not answer" in worker.log_text()
