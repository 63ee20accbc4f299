"""The real OpenTelemetry Python SDK and its OTLP/HTTP exporter ship a program's ``logging``
records to ``/v1/logs``: each appears in ``/events`` once, also when the exporter sent its batch
again because the answer was lost (a cut connection, then a 503 in place of the API's 200)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator.settings import Settings
from tests.support.lossy_proxy import LossyProxy
from tests.support.processes import REPO_ROOT, free_port, start_api
from tests.support.running import running_worker
from tests.support.waiting import eventually
from tests.test_auth import TOKENS, keys_toml

pytestmark = [pytest.mark.broker, pytest.mark.slow]

RECORDS = 50 + 1  # the orders, and one warning


def run_the_app(endpoint: str, count: int) -> subprocess.CompletedProcess[str]:
    """``python -m tests.support.otel_app``, configured by the standard OTEL_* variables."""
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=pod-7,deployment.environment=test",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{endpoint}/v1/logs",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        # The key as an exporter header (URL-encoded, as the variable's format requires).
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKENS['writer']}",
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.support.otel_app", "--count", str(count)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
async def test_logging_records_arrive_once_also_when_the_exporter_retried(
    settings: Settings, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(keys_toml())
    settings = settings.model_copy(update={"port": free_port(), "api_keys_file": keys})
    reader = {"Authorization": f"Bearer {TOKENS['reader']}"}
    with start_api(settings, tmp_path / "api.log") as api:
        async with (
            running_worker(settings),
            httpx.AsyncClient(base_url=api.base_url, headers=reader) as client,
        ):
            await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200)
            with LossyProxy(api.base_url, fates=["drop", "503"]) as proxy:
                app = await asyncio.to_thread(run_the_app, proxy.url, RECORDS - 1)
            assert app.returncode == 0, app.stderr
            assert "Failed to export" not in app.stderr, app.stderr
            # The first batch reached the API three times; only the third answer got back.
            assert [fate for _, fate in proxy.answers][:3] == ["drop", "503", "pass"]
            assert all(status == 200 for status, _ in proxy.answers), proxy.answers
            assert proxy.records > RECORDS  # sent more than once
            stats = await eventually(
                lambda: stats_of(client),
                lambda s: s["received"] >= proxy.records,
                what=f"{proxy.records} deliveries",
            )
            events = (await client.get("/events", params={"limit": 1000})).json()["events"]
    assert (stats["unique_processed"], stats["received"]) == (RECORDS, proxy.records)
    assert stats["duplicate_dropped"] == proxy.records - RECORDS
    assert stats["topics"] == {"checkout": RECORDS}
    bodies = [event["payload"]["body"] for event in events]
    assert sorted(bodies) == sorted(
        [f"order {i} placed" for i in range(50)] + ["payment provider slow"]
    )
    first = next(e for e in events if e["payload"]["body"] == "order 7 placed")
    assert first["source"] == "checkout/pod-7"
    assert first["publisher"] == "writer"
    payload = first["payload"]
    assert (payload["severity_text"], payload["severity_number"]) == ("INFO", 9)
    assert payload["attributes"]["order.id"] == 7
    assert payload["scope"]["name"] == "shop.checkout"
    assert payload["resource"]["deployment.environment"] == "test"
    assert payload["resource"]["telemetry.sdk.language"] == "python"
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == 30  # nanoseconds


async def stats_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/stats")
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats
