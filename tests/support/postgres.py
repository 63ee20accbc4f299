"""Which PostgreSQL the tests use.

The server is ``AGG_TEST_PG_URL`` if set, else the local one at :data:`LOCAL_URL` if it
answers, else a throwaway cluster made with the machine's PostgreSQL binaries (Debian's
``postgresql`` package, which ``make test`` installs), else a PostgreSQL testcontainer where
Docker works. With none of these the tests fail with a clear message: a PostgreSQL test never
skips.

Each test gets a database of its own on that server (``pg_databases.py``); a test that stops,
restarts or kills PostgreSQL runs a server of its own (``private_postgres.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg

from scripts.pg_probe import describe
from tests.support.broker import docker_works
from tests.support.private_postgres import PrivatePostgres
from tests.support.private_postgres_files import NoPostgres, find_bin_dir

__all__ = ["LOCAL_URL", "pg_error", "test_pg_url"]

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONTAINER_IMAGE = "postgres:16-alpine"

T = TypeVar("T")


# -- choosing the server ---------------------------------------------------------------


@contextlib.contextmanager
def test_pg_url(local_url: str = LOCAL_URL) -> Iterator[str]:
    """A superuser's URL on the server the tests use; what it started is gone afterwards.

    ``local_url`` is where a local server is looked for (a closed port takes the
    throwaway-cluster path, which is how that path is tested on a machine that has a server).
    """
    explicit = os.environ.get("AGG_TEST_PG_URL")
    if explicit:
        why = pg_error(explicit)
        if why is not None:
            raise NoPostgres(f"AGG_TEST_PG_URL={describe(explicit)} does not answer: {why}")
        yield explicit
        return
    if pg_error(local_url) is None:
        yield local_url
        return
    if find_bin_dir() is not None:
        server = _start_throwaway()
        try:
            yield server.url
        finally:
            server.close()
        return
    if not docker_works():
        raise NoPostgres(
            "no PostgreSQL for the tests: AGG_TEST_PG_URL is not set, nothing answers at "
            f"{describe(local_url)}, there are no PostgreSQL binaries for a throwaway cluster "
            "and Docker is not available for a testcontainer. Run `make test` (it installs "
            "Debian's postgresql package) or set AGG_TEST_PG_URL."
        )
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(
        CONTAINER_IMAGE, username="postgres", password="postgres", dbname="postgres", driver=None
    ) as container:
        url: str = container.get_connection_url(driver=None)
        yield url


def _start_throwaway() -> PrivatePostgres:
    server = PrivatePostgres()
    try:
        server.start()
    except RuntimeError as exc:
        server.close()
        raise NoPostgres(f"a throwaway PostgreSQL cluster did not start: {exc}") from exc
    return server


def pg_error(url: str, timeout: float = 5.0) -> str | None:
    """None when asyncpg can log in at ``url`` and run a query, else why not.

    Callable from sync code in any thread, also while that thread runs an event loop.
    """
    return _on_own_loop(lambda: _connect_error(url, timeout))


async def _connect_error(url: str, timeout: float) -> str | None:
    try:
        connection = await asyncpg.connect(url, timeout=timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        await connection.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await connection.close(timeout=timeout)
    return None


def _on_own_loop(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # A fresh loop in a helper thread: asyncio.run() refuses to run where a loop is running.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-probe") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
