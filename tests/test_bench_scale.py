"""The scale benchmarks (bench/postgres.py, bench/cluster.py): what they compute and check.

No timing is asserted: what is measured is for ``python -m bench.postgres`` and ``python -m
bench.cluster`` to report. What is tested is that a figure is what it says (a drain timed from
the right reading, a ratio taken within one repeat), that a wrong count fails the run, and a
short real run of the PostgreSQL figures. The cluster's run (four private nodes) is not run here.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from aggregator.decoding import decode_wire
from aggregator.store import PostgresStore
from aggregator.store.postgres_sql import STORE_BATCH
from bench import cluster, postgres, postgres_raw, raw
from bench.comparison import Comparison
from bench.events import make_workload
from bench.figures import CountMismatch
from bench.runner import drain_rate, fresh_settings
from bench.tables import markdown


def test_a_drain_is_timed_from_the_first_reading_after_every_worker_consumes() -> None:
    # 500 were stored before the start reading; 2,000 more in the 2 s after it.
    assert drain_rate((10.0, 500), (12.0, 2500)) == 1000.0


def test_a_drain_over_before_every_worker_consumed_is_refused_not_timed() -> None:
    with pytest.raises(RuntimeError, match="measure with more events"):
        drain_rate((10.0, 2500), (10.0, 2500))


def test_each_figure_of_the_postgres_bench_goes_first_in_turn() -> None:
    order = postgres.FIGURES
    runs = [postgres.rotated(order, repeat) for repeat in range(len(order))]
    assert all(sorted(run) == sorted(order) for run in runs)
    assert [run[0] for run in runs] == list(order)
    # Every rate the bench reports is measured, the raw one on the product's schema included.
    rates = {name for name, _, unit in postgres.ROWS if unit == "events/s"}
    assert set(order) == rates and postgres.RAW_PRODUCT_SCHEMA in rates


@pytest.mark.parametrize("module", [postgres, cluster], ids=["postgres", "cluster"])
def test_every_comparison_reads_figures_the_module_reports(module: ModuleType) -> None:
    prefix = module.__name__.rsplit(".", 1)[1] + "."
    names = {name for name, _, _ in module.ROWS}
    assert all(name.startswith(prefix) for name in names)
    for comparison in module.COMPARISONS:
        assert isinstance(comparison, Comparison)
        assert {comparison.product, comparison.raw} <= names, comparison.label


def test_the_table_takes_each_ratio_within_one_repeat() -> None:
    values = {"x.product": [2.0, 4.0, 3.0], "x.raw": [1.0, 4.0, 3.0]}
    rows = (("x.product", "product", "events/s"), ("x.raw", "raw", "events/s"))
    text = markdown(values, rows, (Comparison("x vs raw", "x.product", "x.raw", 1.2),))
    # Ratios per repeat: 2.0, 1.0, 1.0; their median is short of the target.
    assert "| x vs raw | 1.00 | 1.00 | 2.00 | ≥ 1.20 | no |" in text
    assert "| product | 2.0 | 3.0 | 4.0 | events/s |" in text


def test_on_the_cluster_every_node_is_listed_and_the_queue_has_three_replicas(
    tmp_path: Path,
) -> None:
    urls = [f"amqp://guest:guest@127.0.0.1:{port}/" for port in (20001, 20002, 20003)]
    three = cluster.side_settings(urls, tmp_path)
    single = cluster.side_settings(urls[:1], tmp_path)
    assert three.amqp_urls == urls
    assert three.quorum_group_size == 3
    assert (single.amqp_urls, single.quorum_group_size) == (urls[:1], None)
    assert three.queue != single.queue and three.queue_type == single.queue_type == "quorum"


async def _store_rows(url: str, bodies: list[bytes]) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(postgres_raw.RAW_SCHEMA)
        rows = [raw.row_of(body) for body in bodies]
        await connection.execute(postgres_raw.RAW_INSERT, *map(list, zip(*rows, strict=True)))
    finally:
        await connection.close()


async def test_a_table_with_the_right_count_but_one_wrong_event_fails_the_check(
    pg_url: str,
) -> None:
    workload = make_workload(100, dup_rate=0.3, seed=5)
    distinct = list(dict.fromkeys(workload.bodies))
    stranger = make_workload(1, seed=6).bodies
    # 70 rows, as many as the workload's distinct events, one of them not the workload's.
    await _store_rows(pg_url, distinct[1:] + stranger)
    with pytest.raises(CountMismatch, match="rows differing from the workload's"):
        await postgres.check_stored(pg_url, workload, "test")


async def test_every_distinct_event_stored_once_passes_the_check(pg_url: str) -> None:
    workload = make_workload(100, dup_rate=0.3, seed=5)
    await _store_rows(pg_url, workload.bodies)  # duplicates included: ON CONFLICT drops them
    await postgres.check_stored(pg_url, workload, "test")


# Every column the product writes but tx (the writing transaction's id) and processed_at.
_PRODUCT_ROWS = """
SELECT topic, event_id, timestamp, timestamp_us, source, payload::text, batch_index, publisher
FROM events ORDER BY topic, event_id
"""
_PRODUCT_SUMS = (
    "SELECT name, sum(value)::bigint FROM counters GROUP BY name ORDER BY name",
    "SELECT topic, sum(unique_count)::bigint FROM topic_counts GROUP BY topic ORDER BY topic",
    "SELECT key FROM seen_keys ORDER BY key",
)


async def _product_tables(url: str) -> list[list[tuple[object, ...]]]:
    connection = await asyncpg.connect(url)
    try:
        return [
            [tuple(row) for row in await connection.fetch(query)]
            for query in (_PRODUCT_ROWS, *_PRODUCT_SUMS)
        ]
    finally:
        await connection.close()


async def test_the_raw_pipeline_on_the_product_schema_writes_what_the_product_writes(
    pg_url: str, pg_admin_url: str, tmp_path: Path
) -> None:
    # Batches of the product's size, duplicates within and across them, an offset timestamp.
    workload = make_workload(1200, dup_rate=0.3, seed=5)
    bodies = [body.replace(b"10:00:00.000Z", b"12:00:00.000+02:00", 1) for body in workload.bodies]
    size = postgres_raw.PRODUCT_BATCH
    assert size == 500
    batches = [bodies[i : i + size] for i in range(0, len(bodies), size)]

    store = await PostgresStore.open(pg_url)  # the product: its store, on decoded events
    try:
        for batch in batches:
            await store.store_events([decode_wire(b, max_event_bytes=1 << 20) for b in batch])
    finally:
        await store.close()

    bench_url = await postgres.create_database(pg_admin_url)
    try:
        settings = fresh_settings("amqp://unused/", tmp_path, "quorum", store_url=bench_url)
        await postgres_raw.create_product_schema(settings)
        connection = await asyncpg.connect(bench_url)
        try:
            for batch in batches:
                arguments = postgres_raw.product_batch_arguments(batch, postgres_raw.RAW_SLOT)
                await connection.fetch(STORE_BATCH, *arguments)
        finally:
            await connection.close()
        product, bench = await _product_tables(pg_url), await _product_tables(bench_url)
        assert len(bench[0]) == workload.distinct
        # The timestamp kept as sent, its instant in µs: 12:00+02:00 is 10:00 UTC.
        assert bench[0][0][2:4] == ("2026-11-24T12:00:00.000+02:00", 1795514400000000)
        assert bench == product
        await postgres.check_product_schema(settings, bench_url, workload, "test")
    finally:
        await postgres.drop_database(pg_admin_url, bench_url)


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_short_run_of_the_postgres_figures_leaves_no_database_behind(
    amqp_url: str, pg_admin_url: str
) -> None:
    async def bench_databases() -> set[str]:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            rows = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                postgres.DATABASE_PREFIX + "%",
            )
        finally:
            await admin.close()
        return {str(row[0]) for row in rows}

    before = await bench_databases()
    # Enough that the first of 4 workers cannot drain it all before the others consume.
    values = await postgres.figures(amqp_url, 6000, 1, admin_url=pg_admin_url)
    assert set(values) == {name for name, _, _ in postgres.ROWS}
    assert all(len(rates) == 1 and rates[0] > 0 for rates in values.values()), values
    assert await bench_databases() <= before
