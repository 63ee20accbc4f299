"""A smoke run of the benchmark at tiny sizes: it runs end to end and checks its own counts; and
the report of a partial run (``--only``), which has only some of the figures.

No timing is asserted here: performance is what ``make bench`` reports, not what tests gate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench import cli
from bench.figures import Figures
from bench.report import README_END, README_START, table
from tests.support.processes import REPO_ROOT

FORMATS_ONLY = {
    "formats.native": [100.0, 110.0],
    "formats.otlp": [90.0, 99.0],
    "formats.native_cpu_us": [10.0, 10.0],
    "formats.otlp_cpu_us": [11.0, 12.0],
}


def test_only_takes_known_groups_in_the_order_a_run_measures_them() -> None:
    assert cli.groups(" latency,raw ") == ("raw", "latency")
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown group\(s\) fast"):
        cli.groups("raw,fast")
    with pytest.raises(argparse.ArgumentTypeError, match="none given"):
        cli.groups(",")


def fake_run(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, list[float]], only: tuple[str, ...] | None
) -> None:
    async def run(args: argparse.Namespace) -> Figures:
        assert args.only == only
        return Figures(values=values, checks=["formats ingest confirmed: 300 as expected"])

    monkeypatch.setattr(cli, "run", run)


def test_a_partial_run_reports_what_it_measured_and_leaves_readme_and_latest_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    before = f"intro\n{README_START}\nthe full run's table\n{README_END}\nrest\n"
    readme.write_text(before)
    fake_run(monkeypatch, FORMATS_ONLY, ("formats",))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--only", "formats", "--out", "results"]) == 0
    assert readme.read_text() == before
    # No latest.*, and no chart: none of its pairs was measured.
    out = tmp_path / "results"
    assert sorted(path.name for path in out.iterdir()) == ["partial.json", "partial.md"]
    report = orjson.loads((out / "partial.json").read_bytes())
    assert report["ratios"] == {
        "OTLP protobuf ingest rate vs native /publish": [0.9, 0.9],
        "OTLP protobuf API CPU per event vs native /publish": [1.1, 1.2],
    }
    text = (out / "partial.md").read_text()
    assert "2 repeat(s)" in text and "Only formats: a partial run." in text
    assert (
        "| OTLP protobuf ingest rate vs native /publish | 0.90 | 0.90 | 0.90 | ≥ 0.83 | yes |"
        in text
    )
    # Comparisons whose figures were not measured have no row.
    assert "NDJSON" not in text and "worker drain" not in text


def test_naming_every_group_is_a_full_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\n")
    fake_run(monkeypatch, FORMATS_ONLY, None)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--only", ",".join(reversed(cli.GROUPS)), "--out", "results"]) == 0
    assert (tmp_path / "results" / "latest.md").read_text() in readme.read_text()
    assert not (tmp_path / "results" / "partial.md").exists()


def test_a_table_without_any_pair_has_no_ratio_section() -> None:
    args = argparse.Namespace(queue_type="quorum", events=600, latency_rate=500.0)
    text = table({"raw.pipeline": [1000.0, 1200.0, 1100.0]}, args, took_s=6.0)
    assert (
        "| raw: queue → batched insert-or-ignore → ack | 1,000 | 1,100 | 1,200 | events/s |" in text
    )
    assert "3 repeat(s)" in text and "share of the raw limit" not in text


@pytest.mark.broker
@pytest.mark.slow
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
