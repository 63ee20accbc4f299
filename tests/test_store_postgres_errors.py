"""How the PostgreSQL store reads asyncpg's errors: the store is unavailable, or a row refused.

Unavailable holds the worker's deliveries until the store answers again, a refusal sends the
batch to bisection and the culprit to the dead-letter queue: each row of this table decides
which of the two an operator sees.
"""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions as pg
import pytest

from aggregator.errors import RowRefused, StoreError, StoreUnavailable
from aggregator.store.postgres_errors import translate


def unknown(sqlstate: str) -> asyncpg.PostgresError:
    error = pg.UnknownPostgresError(f"an error with SQLSTATE {sqlstate}")
    error.__dict__["sqlstate"] = sqlstate  # as asyncpg sets a server error's fields
    return error


UNAVAILABLE: list[BaseException] = [
    # The socket under the connection.
    ConnectionRefusedError(111, "Connect call failed"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),  # a connect, an acquire or a command past its timeout
    # asyncpg's own: the connection or pool is gone.
    asyncpg.InterfaceError("connection is closed"),
    asyncpg.InterfaceError("pool is closed"),
    pg.InternalClientError("unexpected"),
    pg.ProtocolError("unexpected message"),
    pg.InvalidCachedStatementError("cached statement plan is invalid"),
    # Class 08: connection exception.
    pg.PostgresConnectionError("connection exception"),
    pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    pg.ConnectionFailureError("connection failure"),
    # Class 25: a read-only server (a standby after a failover).
    pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
    pg.InFailedSQLTransactionError("current transaction is aborted"),
    # Class 28, 3D: wrong password, the database is gone.
    pg.InvalidPasswordError("password authentication failed"),
    pg.InvalidCatalogNameError('database "agg" does not exist'),
    # Class 40: retrying is the cure.
    pg.SerializationError("could not serialize access"),
    pg.DeadlockDetectedError("deadlock detected"),
    # Class 42: the statements are fixed, so this is the schema or the grants.
    pg.UndefinedTableError('relation "events" does not exist'),
    pg.InsufficientPrivilegeError("permission denied for table events"),
    # Class 53: resources.
    pg.DiskFullError("could not extend file: No space left on device"),
    pg.OutOfMemoryError("out of memory"),
    pg.TooManyConnectionsError("sorry, too many clients already"),
    # Class 55: a lock timeout.
    pg.LockNotAvailableError("could not obtain lock"),
    # Class 57: operator intervention.
    pg.AdminShutdownError("terminating connection due to administrator command"),
    pg.CrashShutdownError("terminating connection because of crash of another server process"),
    pg.CannotConnectNowError("the database system is starting up"),
    pg.QueryCanceledError("canceling statement due to statement timeout"),
    pg.DatabaseDroppedError("terminating connection: the database was dropped"),
    # Class 58, XX, F0: the server's own I/O, corruption, configuration.
    pg.PostgresIOError("could not read block"),
    pg.DataCorruptedError("invalid page in block"),
    pg.InternalServerError("cache lookup failed"),
    pg.ConfigFileError("configuration file contains errors"),
]

REFUSED: list[BaseException] = [
    # Class 22: the values. 22P05 is jsonb refusing \u0000; 22021 a NUL byte in text.
    pg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    pg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
    pg.NumericValueOutOfRangeError("value out of range"),
    pg.StringDataRightTruncationError("value too long"),
    pg.InvalidTextRepresentationError("invalid input syntax for type json"),
    # asyncpg could not encode an argument (its DataError, class 22 too).
    pg.DataError("invalid input for query argument $2"),
    # Class 23: constraints.
    pg.NotNullViolationError('null value in column "source"'),
    pg.UniqueViolationError("duplicate key value violates unique constraint"),
    pg.CheckViolationError("new row violates check constraint"),
    # Class 54: a value too large for an index row.
    pg.ProgramLimitExceededError("index row size exceeds btree maximum"),
    # An error of a class this code does not know: the canary check decides.
    unknown("ZZ123"),
]


def name(error: BaseException) -> str:
    return f"{type(error).__name__}-{getattr(error, 'sqlstate', '')}".rstrip("-")


@pytest.mark.parametrize("error", UNAVAILABLE, ids=name)
def test_failures_of_the_store_as_a_whole_are_unavailable(error: BaseException) -> None:
    translated = translate(error)
    assert isinstance(translated, StoreUnavailable)
    assert str(translated).startswith("PostgreSQL: ")


@pytest.mark.parametrize("error", REFUSED, ids=name)
def test_what_the_rows_caused_is_a_refusal(error: BaseException) -> None:
    translated = translate(error)
    assert type(translated) is RowRefused
    assert "refused the rows" in str(translated)


def test_the_message_says_which_error_and_its_sqlstate_on_one_line() -> None:
    error = pg.DiskFullError("could not extend file\nDETAIL: more")
    translated: StoreError = translate(error)
    assert str(translated) == ("PostgreSQL: DiskFullError: could not extend file (SQLSTATE 53100)")
