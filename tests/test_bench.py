"""A smoke run of the benchmark at tiny sizes: it runs end to end and checks its own counts; and
the report of a partial run (``--only``), which has only some of the figures.

No timing is asserted here: performance is what ``make bench`` reports, not what tests gate.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench import cli, single
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


def test_the_postgres_and_cluster_figures_reach_the_full_runs_tables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = {
        "postgres.raw_pipeline_product_schema": [1000.0, 1000.0],
        "postgres.drain": [950.0, 800.0],
        "cluster.single_ingest_http": [100.0, 100.0],
        "cluster.three_ingest_http": [70.0, 60.0],
    }
    fake_run(monkeypatch, values, ("postgres", "cluster"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--only", "cluster,postgres", "--out", "results"]) == 0
    text = (tmp_path / "results" / "partial.md").read_text()
    for name in values:
        label = next(label for key, label, _ in cli.ROWS if key == name)
        assert f"| {label} |" in text, name
    ratios = orjson.loads((tmp_path / "results" / "partial.json").read_bytes())["ratios"]
    assert [0.95, 0.8] in ratios.values() and [0.7, 0.6] in ratios.values()


def test_a_table_without_any_pair_has_no_ratio_section() -> None:
    args = argparse.Namespace(queue_type="quorum", events=600, latency_rate=500.0)
    text = table({"raw.pipeline": [1000.0, 1200.0, 1100.0]}, args, took_s=6.0)
    assert (
        "| raw: queue → batched insert-or-ignore → ack | 1,000 | 1,100 | 1,200 | events/s |" in text
    )
    assert "3 repeat(s)" in text and "share of the raw limit" not in text


def test_single_event_targets_read_the_rate_as_a_share_and_the_cpu_as_a_cost() -> None:
    values = {
        "raw.single_rps": [4000.0, 4000.0, 4000.0],
        "fastapi.single_rps": [2000.0, 2000.0, 2000.0],
        "product.single_rps": [1800.0, 1950.0, 1980.0],
        "raw.single_cpu_us": [150.0, 150.0, 150.0],
        "fastapi.single_cpu_us": [300.0, 300.0, 300.0],
        "product.single_cpu_us": [330.0, 345.0, 390.0],
    }
    args = argparse.Namespace(queue_type="quorum", events=600, latency_rate=500.0)
    text = table(values, args, took_s=60.0)
    # The targets are read against the bare FastAPI gateway, the floor beside them.
    rate = "| single-event POST /publish rate vs bare FastAPI gateway (saturated) | 0.90 | 0.97 |"
    assert f"{rate} 0.99 | ≥ 0.95 | yes |" in text
    cpu = "| single-event API CPU per request vs bare FastAPI gateway | 1.10 | 1.15 | 1.30 |"
    assert f"{cpu} ≤ 1.20 | yes |" in text
    floor = "| single-event API CPU per request vs bare ASGI gateway (the floor) | 2.20 | 2.30 |"
    assert f"{floor} 2.60 | ≤ 1.20 | no |" in text


async def stub_gateway(answers: list[bytes], seen: list[bytes]) -> asyncio.Server:
    """A keep-alive HTTP server that records each request's body and answers in turn."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen.append(await reader.readexactly(length))
            writer.write(answers[len(seen) % len(answers)])
            await writer.drain()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            writer.close()

    return await asyncio.start_server(guarded, "127.0.0.1", 0)


ACCEPTED_CHUNKED = (
    b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
    b"e\r\n" + b'{"accepted":1}' + b"\r\n0\r\n\r\n"
)
ACCEPTED_SIZED = b'HTTP/1.1 202 Accepted\r\ncontent-length: 14\r\n\r\n{"accepted":1}'
UNAVAILABLE = b'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 13\r\n\r\n{"detail":""}'


async def test_the_single_event_load_sends_each_event_once_and_reads_both_framings() -> None:
    seen: list[bytes] = []
    server = await stub_gateway([ACCEPTED_CHUNKED, ACCEPTED_SIZED], seen)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await single.load(f"http://127.0.0.1:{port}", 200, seed=3, concurrency=8)
    assert result["requests"] == 200 and result["accepted"] == 200
    ids = {orjson.loads(body)["event_id"] for body in seen}
    assert len(seen) == 200 and len(ids) == 200


async def test_the_single_event_load_fails_on_an_answer_but_202() -> None:
    server = await stub_gateway([ACCEPTED_SIZED, ACCEPTED_SIZED, UNAVAILABLE], [])
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(RuntimeError, match="POST /publish: 503"):
            await single.load(f"http://127.0.0.1:{port}", 50, seed=3, concurrency=2)


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_benchmark_smoke_run(amqp_url: str, tmp_path: Path) -> None:
    """Every group but postgres (tests/test_bench_scale.py runs it) and cluster (four private
    nodes: minutes), on a few hundred events."""
    out = tmp_path / "results"
    groups = [group for group in cli.GROUPS if group not in ("postgres", "cluster")]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            ",".join(groups),
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
    report = orjson.loads((out / "partial.json").read_bytes())
    figures = report["figures"]
    for name in (
        "raw.publish_confirmed",
        "raw.consume_batched_acks",
        "raw.sqlite_batched_insert",
        "raw.pipeline",
        "raw.pipeline_searchable",
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
        "raw.single_rps",
        "fastapi.single_rps",
        "product.single_rps",
        "raw.single_cpu_us",
        "fastapi.single_cpu_us",
        "product.single_cpu_us",
    ):
        assert len(figures[name]) >= 1 and all(v > 0 for v in figures[name]), name
    # The run verified its own counts: every distinct event stored once, every send confirmed.
    assert any(c.startswith("drain unique: 420") for c in report["checks"]), report["checks"]
    assert any(c.startswith("raw searchable rows: 420") for c in report["checks"])
    assert any(c.startswith("end-to-end received: 600") for c in report["checks"])
    assert any(c.startswith("otlp ingest queue depth: 300") for c in report["checks"])
    assert any(c.startswith("ndjson ingest confirmed: 300") for c in report["checks"])
    # Each single-event run: its 500 warm-up requests and a sixth of the 600, all in its queue.
    for server in ("raw", "fastapi", "product"):
        depth = f"{server} single-event queue depth: 600"
        assert any(c.startswith(depth) for c in report["checks"]), report["checks"]
    assert (out / "partial.png").stat().st_size > 10_000
    table = (out / "partial.md").read_text()
    assert "worker drain (30% duplicates) vs raw pipeline" in table
    assert "NDJSON API CPU per event vs native /publish" in table
    assert "single-event API CPU per request vs bare FastAPI gateway" in table
    assert "| product: worker drains a pre-filled queue |" in done.stdout
