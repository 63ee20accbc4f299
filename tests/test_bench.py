"""A smoke run of the benchmark at tiny sizes: it runs end to end and checks its own counts.

No timing is asserted here: performance is what ``make bench`` reports, not what tests gate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_benchmark_smoke_run(amqp_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--amqp-url",
            amqp_url,
            "--events",
            "600",
            "--repeats",
            "1",
            "--latency-rate",
            "50",
            "--latency-seconds",
            "1",
            "--rss-events",
            "3000",
            "--no-readme",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = orjson.loads((out / "latest.json").read_bytes())
    figures = report["figures"]
    for name in (
        "raw.publish_confirmed",
        "raw.consume_batched_acks",
        "raw.sqlite_batched_insert",
        "raw.pipeline",
        "raw.end_to_end",
        "product.ingest_http",
        "product.drain",
        "product.end_to_end",
        "product.latency_p99_ms",
        "raw.latency_p99_ms",
        "product.worker_rss_end_mb",
        "formats.native",
        "formats.otlp",
        "formats.ndjson",
        "formats.otlp_cpu_us",
    ):
        assert len(figures[name]) >= 1 and all(v > 0 for v in figures[name]), name
    # The run verified its own counts: every distinct event stored once, every send confirmed.
    assert any(c.startswith("drain unique: 420") for c in report["checks"]), report["checks"]
    assert any(c.startswith("end-to-end received: 600") for c in report["checks"])
    assert any(c.startswith("otlp ingest queue depth: 300") for c in report["checks"])
    assert any(c.startswith("ndjson ingest confirmed: 300") for c in report["checks"])
    assert (out / "latest.png").stat().st_size > 10_000
    table = (out / "latest.md").read_text()
    assert "worker drain (30% duplicates) vs raw pipeline" in table
    assert "NDJSON API CPU per event vs native /publish" in table
    assert "| product: worker drains a pre-filled queue |" in done.stdout
