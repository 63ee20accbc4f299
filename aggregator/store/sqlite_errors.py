"""sqlite3's errors as the project's own: the store is unavailable, or it refuses these rows."""

from __future__ import annotations

import sqlite3

from aggregator.errors import RowRefused, StoreError, StoreUnavailable

# Failures of the store as a whole (SQLite's primary result codes): wait and retry. Anything
# else SQLite raises is about the statement's rows (a constraint, a type, a size).
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def translate(exc: sqlite3.Error) -> StoreError:
    """The project's exception for a driver error: unavailable, or a row refused."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # No result code: the connection or the module itself failed (closed, misuse).
        return StoreUnavailable(f"SQLite: {exc!r}")
    if code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"SQLite: {exc} ({getattr(exc, 'sqlite_errorname', code)})")
    return RowRefused(f"SQLite refused the rows: {exc} ({getattr(exc, 'sqlite_errorname', code)})")


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
