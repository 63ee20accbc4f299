"""A database of its own for each test, on the server the tests use: made empty, dropped after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg

__all__ = ["DATABASE_PREFIX", "create_database", "database_url", "drop_database", "fresh_database"]

DATABASE_PREFIX = "agg_test_"


def database_url(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name`` (same server, user and options)."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


async def create_database(admin_url: str) -> str:
    """Create an empty database with a fresh name on the admin URL's server; its URL."""
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex}"
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_url(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url``, also while connections to it are still open."""
    name = urlsplit(url).path.lstrip("/")
    if not name.startswith(DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a database that create_database made")
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        if connection.get_server_version().major >= 13:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new empty database for one test (its URL); dropped afterwards, whatever happened."""
    url = await create_database(admin_url)
    try:
        yield url
    finally:
        await drop_database(admin_url, url)
