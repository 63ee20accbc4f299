"""asyncpg's errors as the project's own: the store is unavailable, or it refuses these rows.

The worker holds its deliveries and retries for as long as :class:`StoreUnavailable` lasts, so
that is the answer for anything that says nothing about the rows: the server or the network
is gone, out of resources, shutting down, read-only, or not the database the code expects.
:class:`RowRefused` is for what the rows themselves caused; the worker then splits the batch
until one event stands alone, and dead-letters it only if a canary row still goes in. So an
error put on the wrong side here costs a canary round trip (refused, but the store is down),
never an event (unavailable is never dead-lettered); but a row error called unavailable would
hold the queue behind that row forever, which is why an unknown error counts as a refusal.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InternalClientError, InvalidCachedStatementError

from aggregator.errors import RowRefused, StoreError, StoreUnavailable

# What a call into asyncpg can raise: the server's errors, the client library's own, and the
# socket's (asyncio.TimeoutError, ConnectionError and friends are OSErrors).
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    InternalClientError,
    OSError,
)

# SQLSTATE classes (the first two characters) that fail every statement alike.
UNAVAILABLE_CLASSES: dict[str, str] = {
    "08": "connection exception",
    "25": "invalid transaction state (e.g. 25006: a read-only server, as after a failover)",
    "28": "invalid authorization",
    "3D": "invalid catalog name: the database does not exist",
    "3F": "invalid schema name",
    "40": "transaction rollback: serialization failure, deadlock; retrying is the cure",
    # The statements are fixed and every value is a parameter: a class-42 error (undefined
    # table or column, privilege) is the schema or the grants, never the rows.
    "42": "syntax error or access rule violation: schema or privileges",
    "53": "insufficient resources: disk full, out of memory, too many connections",
    "55": "object not in prerequisite state: lock not available",
    "57": "operator intervention: shutdown, cancel, cannot connect now",
    "58": "system error: I/O",
    "F0": "configuration file error",
    "XX": "internal error: data or index corrupted",
}

# Classes about the values themselves, listed for the record; anything not named above is a
# refusal as well.
REFUSED_CLASSES: dict[str, str] = {
    "22": "data exception: e.g. 22P05, a \\u0000 in jsonb; 22021, a NUL byte in text",
    "23": "integrity constraint violation",
    "54": "program limit exceeded: e.g. a value too large for an index row",
}


def translate(exc: BaseException) -> StoreError:
    """The project's exception for an error from asyncpg or the socket under it."""
    if isinstance(exc, InvalidCachedStatementError):
        # asyncpg dropped its statement cache (the schema changed under it): try again.
        return StoreUnavailable(f"PostgreSQL: {_describe(exc)}")
    if isinstance(exc, asyncpg.PostgresError):
        # Also a value asyncpg itself cannot encode: its DataError, SQLSTATE 22000.
        code = str(getattr(exc, "sqlstate", None) or "")
        if code[:2] in UNAVAILABLE_CLASSES:
            return StoreUnavailable(f"PostgreSQL: {_describe(exc)} (SQLSTATE {code})")
        return RowRefused(f"PostgreSQL refused the rows: {_describe(exc)} (SQLSTATE {code})")
    # A closed connection or pool, a lost socket, a timeout, a protocol surprise.
    return StoreUnavailable(f"PostgreSQL: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {text}" if text else repr(exc)
