"""A PostgreSQL server of the test's own, for tests that stop, restart, kill or freeze it under a
running worker. The machine's shared server is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Self

from scripts.pg_probe import probe
from tests.support.pg_ports import port_is_free
from tests.support.pg_processes import PG_POLL_INTERVAL_S, descendants, kill_server, wait_exit
from tests.support.private_postgres_files import PrivatePostgresFiles, server_env

__all__ = ["PrivatePostgres"]

_LOG_TAIL_LINES = 40


class PrivatePostgres(PrivatePostgresFiles):
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

    # The running postmaster, set by start() and forgotten by _reap(); None while there is none.
    # Class defaults, so that construction stays PrivatePostgresFiles's.
    _proc: subprocess.Popen[bytes] | None = None
    _finalizer: weakref.finalize[[subprocess.Popen[bytes]], PrivatePostgres] | None = None

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
            if not port_is_free(address, self.port):
                raise RuntimeError(f"port {self.port} on {address} is in use; cannot start")
        with self.log_path.open("ab") as log:
            log.write(b"\n==== postgres.py: starting ====\n")
            log.flush()
            proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                env=server_env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_owner(),
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, kill_server, proc)
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
            time.sleep(PG_POLL_INTERVAL_S)  # poll interval with a deadline

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
        if not wait_exit(proc, max(1.0, timeout - 5.0)):
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: crash recovery on next start
            forced = "fast shutdown timed out; immediate shutdown"
            if not wait_exit(proc, 5.0):
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
        pids = [proc.pid, *(pid for pid, _ in descendants(proc.pid))]
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

    def _reap(self) -> None:
        """Make sure the server and all its processes are gone; forget it."""
        proc = self._proc
        if proc is None:
            return
        kill_server(proc)
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
