"""The publisher CLI and its senders: the load sent end to end over AMQP and HTTP, in-process and
as ``python -m producer``; retries, pacing and the summary."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from aggregator.settings import Settings
from producer.amqp_sender import AmqpSender
from producer.http_sender import HttpSender, retry_after_s
from producer.load import LoadSpec, generate_events
from producer.runner import LoadRunner, Summary
from producer.senders import Outcome
from tests.conftest import make_settings
from tests.support.processes import REPO_ROOT, free_port, settings_env, start_api
from tests.support.running import api_client, running_worker
from tests.support.waiting import eventually


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s("86400") == 60.0  # capped


def test_help_documents_every_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "producer", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in (
        "--via",
        "--url",
        "--amqp-url",
        "--count",
        "--topics",
        "--dup-rate",
        "--batch",
        "--concurrency",
        "--rate",
        "--payload-bytes",
        "--seed",
        "--retries",
        "--timeout",
        "--no-progress",
        "--json",
        "AGG_AMQP_URL",
        "AGG_EXCHANGE",
        "Exit status",
    ):
        assert option in done.stdout, option


# --- end to end -----------------------------------------------------------------------


async def run_producer(settings: Settings, *args: str) -> tuple[int, str, str]:
    """``python -m producer ARGS`` with the environment that names ``settings``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer",
        *args,
        cwd=REPO_ROOT,
        env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def json_summary(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout  # --json prints exactly one line on stdout
    summary: dict[str, Any] = orjson.loads(lines[0])
    return summary


async def stats_when_received(get_stats: Any, received: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        response = await get_stats()
        assert response.status_code == 200, response.text
        stats: dict[str, Any] = response.json()
        return stats

    return await eventually(
        probe,
        lambda s: s["received"] >= received,
        timeout=30,
        what=f"{received} events received by the worker",
    )


def expected_topics(spec: LoadSpec) -> dict[str, int]:
    return dict(Counter(topic for topic, _ in {e.key for e in generate_events(spec)}))


def assert_stored_exactly(stats: dict[str, Any], spec: LoadSpec) -> None:
    assert stats["received"] == spec.count
    assert stats["unique_processed"] == spec.distinct
    assert stats["duplicate_dropped"] == spec.duplicates
    assert stats["dead_lettered"] == 0
    assert stats["topics"] == expected_topics(spec)


@pytest.mark.broker
async def test_amqp_sender_end_to_end(settings: Settings) -> None:
    spec = LoadSpec(count=2000, topics=6, dup_rate=0.25, seed=11)
    async with running_worker(settings), api_client(settings) as client:
        async with AmqpSender(settings) as sender:
            outcomes: list[Outcome] = []
            runner = LoadRunner(spec, sender, batch=100, concurrency=4, on_done=outcomes.append)
            summary = await runner.run()
        assert (summary.sent, summary.confirmed, summary.failed) == (2000, 2000, 0)
        assert (summary.duplicates_intended, summary.distinct) == (500, 1500)
        assert summary.requests == 20 and len(outcomes) == 20
        assert summary.all_confirmed and summary.errors == {}
        assert summary.via == "amqp" and "guest:guest" not in summary.target  # no password
        assert summary.events_per_s > 0 and summary.latency_ms is not None

        stats = await stats_when_received(lambda: client.get("/stats"), spec.count)
        assert_stored_exactly(stats, spec)


@pytest.mark.broker
async def test_http_sender_in_process(settings: Settings) -> None:
    spec = LoadSpec(count=600, topics=3, dup_rate=0.5, seed=5)
    async with running_worker(settings), api_client(settings) as client:
        async with HttpSender("", client=client) as sender:
            summary = await LoadRunner(spec, sender, batch=1, concurrency=8).run()
        assert (summary.confirmed, summary.failed, summary.requests) == (600, 0, 600)
        stats = await stats_when_received(lambda: client.get("/stats"), spec.count)
        assert_stored_exactly(stats, spec)


@pytest.mark.broker
@pytest.mark.parametrize("batch", [1, 10])
async def test_rate_is_kept_by_deadlines(settings: Settings, batch: int) -> None:
    spec = LoadSpec(count=100, seed=3)
    async with AmqpSender(settings) as sender:
        summary = await LoadRunner(spec, sender, batch=batch, concurrency=4, rate=200).run()
    assert summary.confirmed == 100
    # 100 events at 200/s: the last batch is not due before 0.5 s. A lower bound only.
    assert summary.elapsed_s >= 0.45
    assert summary.latency_ms is not None
    assert 0 <= summary.latency_ms["p50"] <= summary.latency_ms["p99"] <= summary.latency_ms["max"]


@pytest.mark.broker
@pytest.mark.slow
async def test_cli_over_http_against_the_api_process(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    spec = LoadSpec(count=2000, topics=8, dup_rate=0.25, seed=21)
    with start_api(settings, tmp_path / "api.log") as api:
        async with (
            running_worker(settings),
            httpx.AsyncClient(base_url=api.base_url, timeout=10) as client,
        ):
            await eventually(
                lambda: client.get("/readyz"),
                lambda r: r.status_code == 200,
                what="the API connected to the broker",
            )
            code, stdout, stderr = await run_producer(
                settings,
                *("--url", api.base_url, "--count", "2000", "--topics", "8"),
                *("--dup-rate", "0.25", "--batch", "50", "--concurrency", "4"),
                *("--seed", "21", "--json"),
            )
            assert code == 0, stderr
            summary = json_summary(stdout)
            assert summary["via"] == "http" and summary["target"] == api.base_url
            assert (summary["count"], summary["sent"], summary["confirmed"]) == (2000, 2000, 2000)
            assert (summary["duplicates_intended"], summary["distinct"]) == (500, 1500)
            assert (summary["failed"], summary["retries"], summary["errors"]) == (0, 0, {})
            assert summary["requests"] == 40 and summary["seed"] == 21
            assert summary["events_per_s"] > 0 and summary["elapsed_s"] > 0
            assert summary["finished_at"] >= summary["started_at"]
            assert set(summary["latency_ms"]) == {"p50", "p99", "max"}

            stats = await stats_when_received(lambda: client.get("/stats"), spec.count)
            assert_stored_exactly(stats, spec)


@pytest.mark.broker
@pytest.mark.slow
async def test_cli_over_amqp_reads_the_settings_and_keeps_the_rate(settings: Settings) -> None:
    spec = LoadSpec(count=100, topics=4, dup_rate=0.1, seed=8)
    async with running_worker(settings), api_client(settings) as client:
        code, stdout, stderr = await run_producer(
            settings,
            *("--via", "amqp", "--count", "100", "--topics", "4", "--dup-rate", "0.1"),
            *("--batch", "1", "--rate", "200", "--seed", "8", "--json"),
        )
        assert code == 0, stderr
        summary = json_summary(stdout)
        assert summary["via"] == "amqp" and settings.exchange in summary["target"]
        assert (summary["confirmed"], summary["duplicates_intended"]) == (100, 10)
        assert summary["rate"] == 200 and summary["elapsed_s"] >= 0.45
        assert summary["latency_ms"]["max"] >= summary["latency_ms"]["p50"] >= 0

        stats = await stats_when_received(lambda: client.get("/stats"), spec.count)
        assert_stored_exactly(stats, spec)


@pytest.mark.slow
async def test_503_is_retried_after_retry_after_then_reported(tmp_path: Path) -> None:
    # The API runs, but its broker never answers: every publish is a 503 with Retry-After.
    settings = make_settings(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        tmp_path,
        host="127.0.0.1",
        port=free_port(),
    )
    common = ("--url", f"http://127.0.0.1:{settings.port}", "--count", "20", "--batch", "5")
    with start_api(settings, tmp_path / "api.log"):
        code, stdout, stderr = await run_producer(settings, *common, "--retries", "1", "--json")
        assert code == 1, stderr
        summary = json_summary(stdout)
        assert (summary["sent"], summary["confirmed"], summary["failed"]) == (20, 0, 20)
        assert summary["retries"] == 4  # each of the 4 requests once
        [(reason, failed)] = summary["errors"].items()
        assert reason.startswith("HTTP 503") and failed == 20
        assert summary["elapsed_s"] >= 1.9  # Retry-After: 2 was honoured before the retry
        assert "503" in stderr  # and each failed request was logged

        code, stdout, _ = await run_producer(settings, *common, "--retries", "0")
        assert code == 1
        assert re.search(r"failed\s+20\b", stdout), stdout
        assert "20 event(s) failed: HTTP 503: not connected to the broker" in stdout


def test_a_summary_says_whether_everything_was_confirmed() -> None:
    def summary(confirmed: int) -> Summary:
        return Summary(
            via="http",
            target="x",
            count=10,
            sent=10,
            confirmed=confirmed,
            failed=10 - confirmed,
            duplicates_intended=0,
            distinct=10,
            retries=0,
            requests=1,
            elapsed_s=1.0,
            events_per_s=float(confirmed),
            started_at=0.0,
            finished_at=1.0,
            batch=10,
            concurrency=1,
            rate=0.0,
            seed=0,
            latency_ms=None,
        )
