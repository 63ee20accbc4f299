"""What an operator reads: a bad setting in one line, a broker it cannot reach said once, a
refused login said as such, and a summary instead of a line per duplicate."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.connection import connect
from aggregator.errors import BrokerUnreachable
from tests.conftest import make_settings
from tests.support.processes import REPO_ROOT, free_port
from worker.summary import ActivitySummary


@pytest.mark.parametrize("module", ["api", "worker"])
def test_a_bad_setting_is_one_line_naming_the_variable(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_")}
    env |= {"AGG_PREFETCH": "0", "AGG_AMQP_URL": "http://user:s3cret@broker/"}
    result = subprocess.run(
        [sys.executable, "-m", module], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "AGG_PREFETCH" in lines[0] and "AGG_AMQP_URL" in lines[0]
    assert "Traceback" not in lines[0] and "s3cret" not in lines[0]


async def test_an_unreachable_broker_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(f"amqp://guest:guest@127.0.0.1:{free_port()}/", tmp_path)
    with (
        caplog.at_level(logging.INFO, logger="aggregator.connection"),
        pytest.raises(BrokerUnreachable),
    ):
        await connect(settings, client_name="test", give_up_after_s=1.5)
    said = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("aggregator")
    ]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "does not answer" in said[0].getMessage()


@pytest.mark.broker
async def test_a_refused_login_is_said_as_such(
    amqp_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:not-the-password@")
    settings = make_settings(wrong, tmp_path)
    with (
        caplog.at_level(logging.WARNING, logger="aggregator.connection"),
        pytest.raises(BrokerUnreachable),
    ):
        await connect(settings, client_name="test", give_up_after_s=0.5)
    [said] = [r.getMessage() for r in caplog.records if r.name.startswith("aggregator")]
    assert "refused the login of user guest" in said and "not-the-password" not in said


def test_a_busy_worker_writes_a_summary_not_a_line_per_duplicate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = ActivitySummary(interval_s=0.0)
    with caplog.at_level(logging.INFO, logger="worker.consumer"):
        summary.add(stored=400, duplicates=100, poison=1)
        summary.flush()  # nothing new since: nothing said
    [line] = [r.getMessage() for r in caplog.records]
    assert "stored 400, duplicates dropped 100, dead-lettered 1" in line
