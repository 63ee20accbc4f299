"""The PostgreSQL test helpers: the server the tests use, a database per test, private servers."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.support import postgres as pg
from tests.support.pg_databases import DATABASE_PREFIX, fresh_database
from tests.support.private_postgres import PrivatePostgres
from tests.support.private_postgres_files import NoPostgres
from tests.support.processes import free_port


def closed_port_url() -> str:
    """A URL where nothing listens (the port was free a moment ago)."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


async def fetch_rows(url: str) -> list[int]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return [row["n"] for row in await connection.fetch("SELECT n FROM kept ORDER BY n")]
    finally:
        await connection.close()


async def make_table(url: str, *values: int) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.execute("CREATE TABLE kept (n integer PRIMARY KEY)")
        await connection.executemany("INSERT INTO kept VALUES ($1)", [(v,) for v in values])
    finally:
        await connection.close()


async def test_the_chosen_server_answers(pg_admin_url: str) -> None:
    connection = await asyncpg.connect(pg_admin_url, timeout=10)
    try:
        assert await connection.fetchval("SELECT 1") == 1
        assert connection.get_server_version().major >= 13  # DROP DATABASE ... WITH (FORCE)
    finally:
        await connection.close()


async def test_a_fresh_database_is_created_empty_and_dropped_even_in_use(
    pg_admin_url: str,
) -> None:
    async with fresh_database(pg_admin_url) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith(DATABASE_PREFIX)
        await make_table(url, 1, 2)
        assert await fetch_rows(url) == [1, 2]
        # An open session must not keep the database alive.
        lingering = await asyncpg.connect(url, timeout=10)
    admin = await asyncpg.connect(pg_admin_url, timeout=10)
    try:
        assert not await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    assert lingering.is_closed() or await _is_dead(lingering)


async def _is_dead(connection: asyncpg.Connection) -> bool:
    try:
        await connection.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return True
    finally:
        connection.terminate()
    return False


async def test_the_pg_url_fixture_is_an_empty_database_of_the_test(pg_url: str) -> None:
    connection = await asyncpg.connect(pg_url, timeout=10)
    try:
        assert (await connection.fetchval("SELECT current_database()")).startswith(DATABASE_PREFIX)
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert await connection.fetchval(tables) == 0
    finally:
        await connection.close()


def test_an_explicit_url_that_does_not_answer_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = closed_port_url()
    monkeypatch.setenv("AGG_TEST_PG_URL", url)
    with pytest.raises(NoPostgres, match="AGG_TEST_PG_URL=.* does not answer"):
        with pg.test_pg_url():
            pass


@pytest.mark.slow
def test_without_a_local_server_a_throwaway_cluster_is_made_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGG_TEST_PG_URL", raising=False)
    local = closed_port_url()
    with pg.test_pg_url(local_url=local) as url:
        assert url != local
        assert pg.pg_error(url) is None
    assert pg.pg_error(url, timeout=2) is not None


@pytest.mark.slow
async def test_a_private_server_keeps_its_data_and_port_across_stop_and_start() -> None:
    with PrivatePostgres() as server:
        url = server.url
        await make_table(url, 1)
        await asyncio.to_thread(server.stop)
        assert not server.is_running()
        assert await asyncio.to_thread(pg.pg_error, url, 2) is not None
        await asyncio.to_thread(server.start)
        assert server.url == url
        assert await fetch_rows(url) == [1]
        async with server.outage():
            assert await asyncio.to_thread(pg.pg_error, url, 2) is not None
        assert await fetch_rows(url) == [1]
        base_dir = server.base_dir
    assert not base_dir.exists()


@pytest.mark.slow
async def test_a_killed_private_server_recovers_its_committed_rows() -> None:
    with PrivatePostgres() as server:
        await make_table(server.url, 1, 2, 3)
        open_session = await asyncpg.connect(server.url, timeout=10)
        postmaster = server.pid
        assert postmaster is not None
        server.kill9()
        assert server.pid is None
        assert _gone(postmaster)
        assert await _is_dead(open_session)
        await asyncio.to_thread(server.start)
        assert await fetch_rows(server.url) == [1, 2, 3]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
