"""Which PostgreSQL the tests use, a database of its own for each test, and private servers.

The server is ``AGG_TEST_PG_URL`` if set, else the local one at :data:`LOCAL_URL` if it
answers, else a throwaway cluster made with the machine's PostgreSQL binaries (Debian's
``postgresql`` package, which ``make test`` installs), else a PostgreSQL testcontainer where
Docker works. With none of these the tests fail with a clear message: a PostgreSQL test never
skips.

Each test gets a database of its own (:func:`fresh_database`) on that server, dropped after
the test, so tests never see each other's rows.

:class:`PrivatePostgres` is a server of the test's own, for tests that stop, restart or kill
PostgreSQL under a running worker. The machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import asyncpg

from scripts.pg_probe import describe, probe
from tests.support.broker import docker_works

__all__ = [
    "LOCAL_URL",
    "NoPostgres",
    "PrivatePostgres",
    "create_database",
    "database_url",
    "drop_database",
    "find_bin_dir",
    "fresh_database",
    "pg_error",
    "test_pg_url",
]

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "agg_test_"
CONTAINER_IMAGE = "postgres:16-alpine"

_HOST = "127.0.0.1"
_OS_USER = "postgres"  # initdb and postgres refuse to run as root
_POLL_INTERVAL_S = 0.05
_LOG_TAIL_LINES = 40
# Where Debian keeps each major version's server binaries (not on PATH).
_DEBIAN_LIB = Path("/usr/lib/postgresql")

T = TypeVar("T")


class NoPostgres(RuntimeError):
    """No PostgreSQL could be found or started for the tests."""


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


def find_bin_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: Debian's newest version, else the ones on PATH."""
    versions = sorted(
        (d for d in _DEBIAN_LIB.glob("*/bin") if d.parent.name.isdigit()),
        key=lambda d: int(d.parent.name),
        reverse=True,
    )
    on_path = shutil.which("initdb")
    candidates = [*versions, *([Path(on_path).resolve().parent] if on_path else [])]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    return None


# -- a database per test ---------------------------------------------------------------


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


# -- a private server ------------------------------------------------------------------


class PrivatePostgres:
    """A throwaway PostgreSQL server: its own cluster in a temporary directory, its own port.

    The port is picked at construction (free on 127.0.0.1, below the kernel's ephemeral range,
    so no outgoing connection takes it while the server is down) and kept, and so is the data
    directory: ``url`` stays valid across :meth:`stop`/:meth:`start`/:meth:`kill9`, and
    committed rows survive them. Trust authentication for everyone, as the server listens only
    on ``listen`` (127.0.0.1 by default; add a network namespace's gateway address for a server
    that processes in that namespace must reach). No Unix socket.

    When we are root, initdb and the server run as the ``postgres`` OS user (both refuse root);
    the directory is then created under ``parent_dir`` (default: the system's temporary
    directory, which that user can traverse) and handed to that user.

    The server is our own child (``postgres -D``), not daemonised by ``pg_ctl start``: so we
    reap it, see its exit code, kill it by handle, and a finalizer kills it if nobody closed
    this object. :meth:`stop` sends what ``pg_ctl stop -m fast`` sends. From an async test, call
    the blocking methods through ``asyncio.to_thread`` (or use :meth:`outage`) so that a worker
    on the same loop keeps running while the server goes away and comes back.

    Usage::

        with PrivatePostgres() as server:
            ...connect to server.url...
            server.stop()
            server.start()
    """

    def __init__(
        self,
        *,
        listen: Sequence[str] = (_HOST,),
        parent_dir: Path | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise NoPostgres(
                "no PostgreSQL binaries (initdb, postgres) for a private server: install "
                "Debian's postgresql package (scripts/ensure-postgres.sh does)"
            )
        if not listen:
            raise ValueError("a server must listen somewhere")
        self.bin_dir = found
        self.listen = tuple(listen)
        self.port = _pick_free_port()
        self.base_dir = Path(tempfile.mkdtemp(prefix="agg-pg-", dir=parent_dir))
        self._dir_finalizer = weakref.finalize(self, shutil.rmtree, self.base_dir, True)
        self._owner = _os_user_ids() if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.base_dir, *self._owner)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], PrivatePostgres] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server's stdout/stderr, appended to on every start."""
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        """The ``postgres`` superuser on the ``postgres`` database, at the first address."""
        return self.url_at(self.listen[0])

    def url_at(self, address: str, database: str = "postgres") -> str:
        """The superuser's URL through one of the addresses the server listens on."""
        host = f"[{address}]" if ":" in address else address
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        """True while the server this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (initdb first, once) and wait until a login succeeds.

        Raises RuntimeError with the tail of the server's log if it exits, the deadline passes
        or the port is taken; no process is left behind then.
        """
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        self._reap()  # a previous server that died on its own
        deadline = time.monotonic() + timeout
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        for address in self.listen:
            if not _port_is_free(address, self.port):
                raise RuntimeError(f"port {self.port} on {address} is in use; cannot start")
        with self.log_path.open("ab") as log:
            log.write(b"\n==== postgres.py: starting ====\n")
            log.flush()
            proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                env=_server_env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill_server, proc)
        while True:
            if proc.poll() is not None:
                self._reap()
                raise RuntimeError(
                    f"postgres exited with code {proc.returncode} while starting{self._log_tail()}"
                )
            why = probe(self.url, timeout=max(0.2, min(2.0, deadline - time.monotonic())))
            if why is None:
                return
            if time.monotonic() >= deadline:
                self._reap()
                raise RuntimeError(
                    f"postgres did not accept a login on port {self.port} within {timeout:g}s "
                    f"(last: {why}){self._log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)  # poll interval with a deadline

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly (fast mode: open sessions are ended, committed data is kept).

        Falls back to an immediate shutdown, then SIGKILL; raises RuntimeError if it had to.
        A no-op when the server is not running.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._reap()
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown, as `pg_ctl stop -m fast`
        forced = ""
        if not _wait_exit(proc, max(1.0, timeout - 5.0)):
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: crash recovery on next start
            forced = "fast shutdown timed out; immediate shutdown"
            if not _wait_exit(proc, 5.0):
                forced += ", then SIGKILL"
        self._reap()
        if forced:
            raise RuntimeError(f"postgres did not stop cleanly: {forced}{self._log_tail()}")

    def kill9(self) -> None:
        """SIGKILL the postmaster and every process of the server at once, as when its machine
        or container dies; the next :meth:`start` runs crash recovery on the same data."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        self._reap()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the server stopped (SIGSTOP) for the body of the ``with``, then
        continued: connections stay open and answer nothing, as across a network partition or
        a paused VM. Nothing is refused and nothing closed, so only timeouts can tell."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        pids = [proc.pid, *(pid for pid, _ in _descendants(proc.pid))]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Stopped (connections refused) for the body of the ``async with``; started again after,
        on the same port and data. The event loop keeps running meanwhile."""
        await asyncio.to_thread(self.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(self.start)

    def close(self) -> None:
        """Stop the server if it runs and delete its directory; idempotent.

        Never leaves a process behind; re-raises stop()'s RuntimeError if it had to kill.
        """
        try:
            self.stop()
        finally:
            self._reap()
            self._dir_finalizer()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<PrivatePostgres port={self.port} {state} in {self.base_dir}>"

    # -- internals ---------------------------------------------------------------------

    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        uid, gid = self._owner
        return {"user": uid, "group": gid, "extra_groups": []}

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Skips the final fsync of ~40 MB: a throwaway cluster, and much faster.
                "--no-sync",
            ],
            env=_server_env(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._as_owner(),
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}) in {self.base_dir}:\n"
                f"{result.stdout}{result.stderr}"
            )
        addresses = ",".join(self.listen)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# postgres.py: a private test server\n"
                f"listen_addresses = '{addresses}'\n"
                f"port = {self.port}\n"
                # No socket file, so no clash with the shared server's socket directory.
                "unix_socket_directories = ''\n"
                # Data outlives a killed server either way (the OS keeps what was written);
                # fsync only guards against the machine itself crashing.
                "fsync = off\n"
                "shared_buffers = 16MB\n"
                "logging_collector = off\n"
            )
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            # The server listens only on the addresses given, so whoever reaches it may log in.
            hba.write("host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n")

    def _reap(self) -> None:
        """Make sure the server and all its processes are gone; forget it."""
        proc = self._proc
        if proc is None:
            return
        _kill_server(proc)
        self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        return f"\n--- tail of {self.log_path} ---\n" + "\n".join(lines)


def _os_user_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(_OS_USER)
    except KeyError:
        raise NoPostgres(
            f"we are root and there is no {_OS_USER!r} OS user to run initdb and the server as "
            "(Debian's postgresql package creates it)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT, PGOPTIONS & co. of the caller must not redirect the private server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _kill_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the postmaster and every process it started, reap it, and wait until they are
    dead. Its children each run in a session of their own, so its process group is not enough;
    and a busy backend would only notice its postmaster's death at its next wait, holding the
    shared memory that a new postmaster on this data directory must find free.

    Killed children are reparented to PID 1; where that does not reap (some containers), they
    stay zombies: dead, holding nothing but their pid.
    """
    children: list[tuple[int, int]] = []
    # Only while the postmaster is unreaped: until then its pid cannot be reused.
    if proc.returncode is None:
        children = _descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        for pid, started in children:
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10.0
    while any(_alive(pid, started) for pid, started in children):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"postgres processes survived SIGKILL: {children}")
        time.sleep(_POLL_INTERVAL_S)  # poll interval with a deadline


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the ")" closing the command name: state, ppid, ..., start time (fields 3, 4, 22).
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int, started: int) -> bool:
    """True while that very process (not a later one with its pid) runs; a zombie is dead."""
    stat = _proc_stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in ("Z", "X")


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every descendant of ``root``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        stat = _proc_stat(int(entry)) if entry.isdigit() else None
        if stat is not None:
            children.setdefault(stat[1], []).append((int(entry), stat[2]))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # TIME_WAIT leftovers of a previous start do not count; a listening socket does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _pick_free_port() -> int:
    high = _ephemeral_low() - 1
    low = 20000 if high > 21000 else 1024
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(low, high)
        if port != 5432 and _port_is_free(_HOST, port):
            return port
    raise RuntimeError(f"no free port in {low}-{high}")
