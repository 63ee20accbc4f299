"""Fixtures: one broker and one PostgreSQL per session; each test gets its own exchange, queue,
DB file and PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.store import DedupStore, SqliteStore
from tests.support.broker import NoBroker, delete_topology, test_broker_url
from tests.support.postgres import NoPostgres, fresh_database, test_pg_url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    try:
        with test_broker_url() as url:
            yield url
    except NoBroker as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A superuser's URL on the PostgreSQL the tests use (see tests/support/postgres.py)."""
    try:
        with test_pg_url() as url:
            yield url
    except NoPostgres as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
async def pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of the test's own, empty, dropped after the test."""
    async with fresh_database(pg_admin_url) as url:
        yield url


def make_settings(amqp_url: str, tmp_path: Path, **overrides: object) -> Settings:
    name = f"test-{uuid.uuid4().hex[:12]}"
    values: dict[str, object] = {
        "amqp_url": amqp_url,
        "db_path": tmp_path / "aggregator.db",
        "exchange": name,
        "queue": f"{name}.q",
        "batch_ms": 5.0,
        "reconnect_interval_s": 0.5,
        "connect_timeout_s": 10.0,
        # Worker subprocesses would all bind the same metrics port; tests that read it set one.
        "metrics_port": 0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
async def settings(amqp_url: str, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = make_settings(amqp_url, tmp_path)
    yield settings
    await delete_topology(settings)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DedupStore]:
    store = await SqliteStore.open(tmp_path / "unit.db")
    yield store
    await store.close()
