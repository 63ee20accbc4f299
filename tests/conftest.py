"""Fixtures: one broker and one PostgreSQL per session; each test gets its own exchange, queue,
DB file and PostgreSQL database. ``store`` and ``stores`` run a test on each store backend;
``node`` is a private RabbitMQ node of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aggregator.settings import Settings
from aggregator.store import DedupStore
from tests.support.broker import NoBroker, delete_topology, test_broker_url
from tests.support.netns import service_addresses
from tests.support.pg_databases import fresh_database
from tests.support.postgres import test_pg_url
from tests.support.private_postgres_files import NoPostgres
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.rabbit_node import RabbitNode
from tests.support.stores import BACKENDS, StoreFactory


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


@pytest.fixture(scope="session")
def cluster_addresses() -> Iterator[list[str]]:
    """Three addresses of our own on the loopback, one per cluster node, that a test host (a
    network namespace) can reach, and lose one at a time (tests/support/netns.py)."""
    with service_addresses(3) as addresses:
        yield addresses


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_addresses: list[str]
) -> Iterator[RabbitCluster]:
    """A private three-node RabbitMQ cluster, formed once (~20 s) for every test that needs one.

    Each node listens on 127.0.0.1 and on every cluster address; a test that stops or kills a
    node starts it again before it ends. ``loopback_users = none``: guest may log in from a
    namespace's address.
    """
    with RabbitCluster(
        tmp_path_factory.mktemp("cluster"),
        extra_listen_addresses=cluster_addresses,
        extra_config=["loopback_users = none"],
    ) as formed:
        yield formed


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RabbitNode]:
    """A private RabbitMQ node under the test's own directory, stopped and reaped at the end."""
    rabbit = RabbitNode(tmp_path / "rabbit")
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.close()


@pytest.fixture
async def pg_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of the test's own, empty, dropped after the test."""
    async with fresh_database(pg_admin_url) as url:
        yield url


def make_settings(amqp_url: str, tmp_path: Path, **overrides: object) -> Settings:
    """Settings of the test's own; the store is SQLite in ``tmp_path`` unless ``store_url``
    (e.g. ``pg_url``, or ``stores.url``) says otherwise."""
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


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Stores on one empty SQLite file, or one empty PostgreSQL database: the test runs on both."""
    if request.param == "sqlite":
        factory = StoreFactory.sqlite(tmp_path / "unit.db")
        try:
            yield factory
        finally:
            await factory.close_all()
        return
    admin_url: str = request.getfixturevalue("pg_admin_url")
    async with fresh_database(admin_url) as url:
        factory = StoreFactory.postgres(url)
        try:
            yield factory
        finally:
            await factory.close_all()


@pytest.fixture
async def store(stores: StoreFactory) -> DedupStore:
    """A store on each backend in turn (closed by ``stores`` after the test)."""
    return await stores.open()
