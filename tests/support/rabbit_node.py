"""A private, throwaway RabbitMQ node for tests that must stop and restart a broker.

The machine's shared broker (node ``rabbit@localhost`` on 127.0.0.1:5672) is never
touched: the private node gets its own node name, AMQP and distribution ports, Erlang
cookie (``$HOME`` is a directory under ``base_dir``), config, enabled-plugins file, data
and log directories, and its own (empty) ``rabbitmq-env.conf`` so nothing from
``/etc/rabbitmq`` leaks in.  Every ``rabbitmqctl`` call is addressed with ``-n`` to the
private node name and runs with the private ``$HOME``, so it cannot reach the shared node
(whose cookie it does not have anyway).

Options for clusters (see ``rabbit_cluster.py``): ``cookie`` shares one Erlang cookie
between nodes, ``extra_listen_addresses`` adds AMQP listeners on more local addresses
(e.g. a veth end a network namespace can reach; 127.0.0.1 is always listened on),
``extra_config`` appends lines to ``rabbitmq.conf``.  ``kill()`` is a crash (SIGKILL of
the whole Erlang VM), ``stop()`` a clean shutdown.

Stdlib only.  Readiness is a real AMQP 0-9-1 login as guest/guest on 127.0.0.1, so once
``start()`` returns, clients can connect.  Data survives ``stop()``/``start()`` as long as
the same ``base_dir`` and node name are used (the node name is remembered in
``base_dir/NODENAME`` when none is given).

Usage::

    with RabbitNode(tmp_path) as node:
        ...connect to node.url...
        node.stop()
        node.start()
"""

from __future__ import annotations

import signal
import subprocess
import time
import types
import weakref

from tests.support.amqp_login import AmqpError, amqp_login
from tests.support.rabbit_node_ctl import RABBITMQ_BIN_DIR, RabbitNodeCtl
from tests.support.rabbit_ports import (
    _POLL_INTERVAL,
    HOST,
    _epmd_has_name,
    _wait_port_closed,
    port_is_free,
)
from tests.support.rabbit_processes import emergency_kill, kill_tree, signal_process, wait_exit

__all__ = ["RabbitNode"]

_LOG_TAIL_LINES = 40


class RabbitNode(RabbitNodeCtl):
    """A private RabbitMQ node living entirely under ``base_dir``.

    ``amqp_port`` and the distribution port are picked at construction (free ports on
    127.0.0.1 below the kernel's ephemeral range) and kept for the object's lifetime, so
    ``url`` stays valid across ``stop()``/``start()``.
    """

    # The running VM, set by start() and forgotten by _reap(); None while there is none. Class
    # defaults, so that construction stays RabbitNodeFiles's.
    _proc: subprocess.Popen[bytes] | None = None
    _finalizer: weakref.finalize[[subprocess.Popen[bytes]], RabbitNode] | None = None

    # -- public API ------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait until guest can log in over AMQP.

        Raises RuntimeError (with the tail of the node's logs) if the node exits, the
        deadline passes, or its name/ports are already in use.  On failure no process is
        left behind.
        """
        if self.is_running():
            raise RuntimeError(f"{self.node_name} is already running")
        self._reap()  # a previous process that died on its own
        deadline = time.monotonic() + timeout

        if _epmd_has_name(self._short_name):
            raise RuntimeError(
                f"node name {self.node_name} is already registered with epmd; "
                "another node with this name is running"
            )
        wanted = [(HOST, self.amqp_port), (HOST, self.dist_port)]
        wanted += [(address, self.amqp_port) for address in self.extra_listen_addresses]
        for host, port in wanted:
            if not port_is_free(port, host):
                raise RuntimeError(
                    f"port {port} on {host} is in use (or {host} is not an address of this "
                    f"host); cannot start {self.node_name}"
                )

        self._write_files()
        with open(self.console_log, "ab") as console:
            console.write(f"\n==== rabbit_node.py: starting {self.node_name} ====\n".encode())
            console.flush()
            proc = subprocess.Popen(
                [str(RABBITMQ_BIN_DIR / "rabbitmq-server")],
                env=self._env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, emergency_kill, proc)

        last_error = "no attempt made"
        while True:
            if proc.poll() is not None:
                self._reap()
                raise RuntimeError(
                    f"{self.node_name} exited with code {proc.returncode} while starting"
                    f"{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            try:
                amqp_login(self.amqp_port, timeout=max(0.5, min(5.0, remaining)))
                return
            except (OSError, AmqpError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                self._force_kill(grace=5.0)
                raise RuntimeError(
                    f"{self.node_name} did not accept AMQP logins on port {self.amqp_port} "
                    f"within {timeout:.0f}s (last error: {last_error}){self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def url_on(self, address: str) -> str:
        """The AMQP URL on one of the extra listen addresses (or 127.0.0.1)."""
        if address != HOST and address not in self.extra_listen_addresses:
            raise ValueError(f"{self.node_name} does not listen on {address}")
        return f"amqp://guest:guest@{address}:{self.amqp_port}/"

    def kill(self) -> None:
        """Crash the node: SIGKILL its whole Erlang VM (and the wrapper script and port
        programs), no shutdown of any kind.  Returns once the VM is gone; a no-op if the
        node is not running.  Data on disk stays, so ``start()`` brings the node back."""
        self._reap()

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the node down gracefully (``rabbitmqctl shutdown``).

        Waits until the Erlang VM has exited and the AMQP port is closed.  If the CLI
        fails, falls back to SIGTERM (still a clean Erlang shutdown).  If the node is
        still alive at the deadline it is SIGKILLed and RuntimeError is raised (unflushed
        data may be lost then).  A no-op if the node is not running.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is not None:
            self._reap()
            return
        deadline = time.monotonic() + timeout
        notes: list[str] = []

        # Leave a few seconds of the budget for the fallbacks.
        ctl_budget = max(1.0, min(timeout * 0.8, timeout - 5.0))
        ctl_ok = False
        try:
            result = self._ctl(["shutdown"], timeout=ctl_budget)
            ctl_ok = result.returncode == 0
            if not ctl_ok:
                notes.append(
                    f"rabbitmqctl shutdown exited {result.returncode}: {result.stdout.strip()}"
                )
        except subprocess.TimeoutExpired:
            notes.append(f"rabbitmqctl shutdown did not finish within {ctl_budget:.0f}s")

        # After a successful `shutdown` the VM is gone or about to be.  Otherwise fall back
        # to SIGTERM, which the rabbitmq-server wrapper script turns into a clean VM stop.
        remaining = deadline - time.monotonic()
        grace = remaining - 3.0 if ctl_ok else min(2.0, remaining)
        if not wait_exit(proc, grace):
            notes.append("sent SIGTERM")
            signal_process(proc.pid, signal.SIGTERM)
            wait_exit(proc, deadline - time.monotonic())

        forced = proc.poll() is None
        if forced:
            notes.append("still alive at the deadline: SIGKILL")
        self._reap()
        if not _wait_port_closed(self.amqp_port, 5.0):
            notes.append(f"port {self.amqp_port} still accepts connections after the node exited")
            forced = True
        if forced:
            raise RuntimeError(
                f"{self.node_name} did not stop cleanly: {'; '.join(notes)}{self.log_tail()}"
            )

    def is_running(self) -> bool:
        """True while the node's Erlang VM (started by this object) is alive."""
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stop the node if it runs; idempotent.  Never leaves a process behind.

        Re-raises stop()'s RuntimeError if the node had to be killed.
        """
        try:
            self.stop()
        finally:
            self._reap()

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RabbitNode {self.node_name} amqp={self.amqp_port} {state} in {self.base_dir}>"

    # -- internals -------------------------------------------------------------------

    def _force_kill(self, grace: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            signal_process(proc.pid, signal.SIGTERM)
            wait_exit(proc, grace)
        self._reap()

    def _reap(self) -> None:
        """Make sure the VM and everything it spawned is gone; forget the process."""
        proc = self._proc
        if proc is None:
            return
        kill_tree(proc)
        self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the console and node logs, for error messages."""
        parts = []
        for path in (self.console_log, self.node_log):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"\n--- tail of {path} ---\n" + "\n".join(tail))
        return "".join(parts)
