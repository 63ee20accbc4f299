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

import ipaddress
import os
import pathlib
import random
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
import types
import weakref
from collections.abc import Sequence

__all__ = ["RABBITMQ_BIN_DIR", "RabbitNode"]

RABBITMQ_BIN_DIR = pathlib.Path("/usr/lib/rabbitmq/bin")

_HOST = "127.0.0.1"
_SHARED_NODE_SHORT_NAMES = frozenset({"rabbit"})
# Ports we never hand out: epmd, the shared node's AMQP/TLS/management/dist ports and
# the range the CLI tools (rabbitmqctl & co.) use for their own distribution listener.
_RESERVED_PORTS = frozenset({4369, 5671, 5672, 15672, 25672, *range(35672, 35683)})
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Erlang reads the cookie as an atom; plain alphanumerics avoid any quoting question.
_COOKIE_RE = re.compile(r"^[A-Za-z0-9]{16,255}$")
# Variables rabbitmq-server / rabbit_env read, in their unprefixed form (rabbit_env falls
# back from RABBITMQ_X to X), plus shell-script knobs.  Inherited values are dropped so
# the caller's environment cannot redirect the private node.
_STRIPPED_ENV = frozenset(
    {
        "ADVANCED_CONFIG_FILE",
        "ALLOW_INPUT",
        "BASE",
        "CONFIG_FILE",
        "CONFIG_FILES",
        "CONF_ENV_FILE",
        "CTL_DIST_PORT_MAX",
        "CTL_DIST_PORT_MIN",
        "CTL_ERL_ARGS",
        "DBG",
        "DIST_PORT",
        "ENABLED_PLUGINS",
        "ENABLED_PLUGINS_FILE",
        "ERL_AFLAGS",
        "ERL_CRASH_DUMP",
        "ERL_EPMD_ADDRESS",
        "ERL_EPMD_PORT",
        "ERL_FLAGS",
        "ERL_LIBS",
        "ERL_ZFLAGS",
        "FEATURE_FLAGS",
        "FEATURE_FLAGS_FILE",
        "KEEP_PID_FILE_ON_EXIT",
        "LOG",
        "LOGS",
        "LOG_BASE",
        "LOG_FF_REGISTRY",
        "MNESIA_BASE",
        "MNESIA_DIR",
        "MOTD_FILE",
        "NODENAME",
        "NODE_IP_ADDRESS",
        "NODE_PORT",
        "NOTIFY_SOCKET",
        "PID_FILE",
        "PLUGINS_DIR",
        "PLUGINS_EXPAND_DIR",
        "PRODUCT_NAME",
        "PRODUCT_VERSION",
        "QUORUM_DIR",
        "SERVER_ADDITIONAL_ERL_ARGS",
        "SERVER_CODE_PATH",
        "SERVER_ERL_ARGS",
        "SERVER_START_ARGS",
        "SYS_PREFIX",
        "UPGRADE_LOG",
        "USE_LONGNAME",
        "USE_RABBIT_BOOT_SCRIPT",
    }
)
# The CLIs that take ``-n NODE`` and authenticate with the cookie in $HOME.
_CLI_TOOLS = frozenset(
    {
        "rabbitmqctl",
        "rabbitmq-diagnostics",
        "rabbitmq-queues",
        "rabbitmq-plugins",
        "rabbitmq-upgrade",
    }
)
_POLL_INTERVAL = 0.2
_LOG_TAIL_LINES = 40


class RabbitNode:
    """A private RabbitMQ node living entirely under ``base_dir``.

    ``amqp_port`` and the distribution port are picked at construction (free ports on
    127.0.0.1 below the kernel's ephemeral range) and kept for the object's lifetime, so
    ``url`` stays valid across ``stop()``/``start()``.
    """

    amqp_port: int
    dist_port: int
    node_name: str
    url: str
    base_dir: pathlib.Path
    extra_listen_addresses: tuple[str, ...]

    def __init__(
        self,
        base_dir: pathlib.Path,
        *,
        name: str | None = None,
        cookie: str | None = None,
        extra_listen_addresses: Sequence[str] = (),
        extra_config: Sequence[str] = (),
    ) -> None:
        """``cookie``: the Erlang cookie to use (nodes of one cluster need the same one);
        default a random one made at the first start and kept in ``base_dir``.
        ``extra_listen_addresses``: further IPv4 addresses to accept AMQP on, same port
        as on 127.0.0.1; each must be a specific address of this host (no wildcard).
        ``extra_config``: lines appended to the generated ``rabbitmq.conf``.
        """
        if cookie is not None and not _COOKIE_RE.match(cookie):
            raise ValueError("cookie must be 16-255 ASCII letters/digits")
        self._cookie = cookie
        self.extra_listen_addresses = tuple(_listen_address(a) for a in extra_listen_addresses)
        for line in extra_config:
            if "\n" in line or "\r" in line:
                raise ValueError(f"extra_config takes one line per item, got {line!r}")
        self._extra_config = tuple(extra_config)
        self.base_dir = pathlib.Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.node_name = self._resolve_node_name(name)
        self.amqp_port, self.dist_port = _pick_free_ports(2)
        self.url = f"amqp://guest:guest@{_HOST}:{self.amqp_port}/"
        self._short_name = self.node_name.split("@", 1)[0]
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], RabbitNode] | None = None

    # -- paths -----------------------------------------------------------------------

    @property
    def home_dir(self) -> pathlib.Path:
        return self.base_dir / "home"

    @property
    def mnesia_base(self) -> pathlib.Path:
        return self.base_dir / "mnesia"

    @property
    def log_dir(self) -> pathlib.Path:
        return self.base_dir / "log"

    @property
    def node_log(self) -> pathlib.Path:
        """RabbitMQ's own log file."""
        return self.log_dir / f"{self.node_name}.log"

    @property
    def console_log(self) -> pathlib.Path:
        """stdout/stderr of rabbitmq-server (appended to on every start)."""
        return self.log_dir / "console.log"

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
        wanted = [(_HOST, self.amqp_port), (_HOST, self.dist_port)]
        wanted += [(address, self.amqp_port) for address in self.extra_listen_addresses]
        for host, port in wanted:
            if not _port_is_free(port, host):
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
        self._finalizer = weakref.finalize(self, _emergency_kill, proc)

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
                _amqp_login(self.amqp_port, timeout=max(0.5, min(5.0, remaining)))
                return
            except (OSError, _AmqpError) as exc:
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
        if address != _HOST and address not in self.extra_listen_addresses:
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
        if not _wait_exit(proc, grace):
            notes.append("sent SIGTERM")
            _signal(proc.pid, signal.SIGTERM)
            _wait_exit(proc, deadline - time.monotonic())

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

    def ctl(
        self, *args: str, timeout: float = 60.0, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <this node> ARGS`` with this node's HOME/cookie.

        ``tool`` picks another CLI of the same family (``rabbitmq-queues``,
        ``rabbitmq-diagnostics``, ...), addressed the same way.
        """
        if tool not in _CLI_TOOLS:
            raise ValueError(f"unknown CLI tool {tool!r}; one of {sorted(_CLI_TOOLS)}")
        return self._ctl(list(args), timeout=timeout, tool=tool)

    def __enter__(self) -> "RabbitNode":
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

    def _resolve_node_name(self, name: str | None) -> str:
        name_file = self.base_dir / "NODENAME"
        if name is None:
            if name_file.exists():
                name = name_file.read_text().strip()
            else:
                name = f"rmqtest-{secrets.token_hex(4)}"
        short, _, host = name.partition("@")
        if host not in ("", "localhost"):
            raise ValueError(f"node name must be NAME or NAME@localhost, got {name!r}")
        if not _NAME_RE.match(short):
            raise ValueError(f"invalid node name {name!r}")
        if short in _SHARED_NODE_SHORT_NAMES:
            raise ValueError(f"refusing to use {name!r}: that is the shared broker's name")
        full = f"{short}@localhost"
        name_file.write_text(full + "\n")
        return full

    def _write_files(self) -> None:
        for d in (self.home_dir, self.mnesia_base, self.log_dir, self.base_dir / "conf.d"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home_dir / ".erlang.cookie"
        if self._cookie is not None:
            # Rewritten on every start: a cluster's nodes must agree on it.  Replace, not
            # write in place: the old file is read-only.
            tmp = cookie.with_name(".erlang.cookie.new")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(self._cookie)
            os.replace(tmp, cookie)
        elif not cookie.exists():
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(16).upper())
        # Erlang refuses a cookie readable by group/others.
        os.chmod(cookie, 0o400)
        conf = [f"listeners.tcp.local = {_HOST}:{self.amqp_port}"]
        conf += [
            f"listeners.tcp.extra{i} = {address}:{self.amqp_port}"
            for i, address in enumerate(self.extra_listen_addresses, start=1)
        ]
        conf += [
            "log.file.level = info",
            "log.console = false",
            # Tests must not stall on a disk alarm of a busy CI disk.
            "disk_free_limit.absolute = 10MB",
            *self._extra_config,
        ]
        (self.base_dir / "rabbitmq.conf").write_text("".join(f"{line}\n" for line in conf))
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        # Our own (empty) env file so /etc/rabbitmq/rabbitmq-env.conf is not sourced.
        (self.base_dir / "rabbitmq-env.conf").write_text("")

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RABBITMQ_") and k not in _STRIPPED_ENV
        }
        mnesia_dir = self.mnesia_base / self.node_name
        env.update(
            {
                "HOME": str(self.home_dir),
                "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.node_name,
                "RABBITMQ_NODE_IP_ADDRESS": _HOST,
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": str(self.base_dir / "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.mnesia_base),
                "RABBITMQ_MNESIA_DIR": str(mnesia_dir),
                "RABBITMQ_QUORUM_DIR": str(mnesia_dir / "quorum"),
                "RABBITMQ_FEATURE_FLAGS_FILE": str(
                    self.mnesia_base / f"{self.node_name}-feature_flags"
                ),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(
                    self.mnesia_base / f"{self.node_name}-plugins-expand"
                ),
                "RABBITMQ_PID_FILE": str(self.base_dir / f"{self.node_name}.pid"),
                "RABBITMQ_LOG_BASE": str(self.log_dir),
                "RABBITMQ_LOGS": str(self.node_log),
                "RABBITMQ_UPGRADE_LOG": str(self.log_dir / f"{self.node_name}_upgrade.log"),
                "RABBITMQ_MOTD_FILE": str(self.base_dir / "motd"),
                # Same loopback-only distribution as the shared node's env file sets.
                "ERL_EPMD_ADDRESS": _HOST,
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                "ERL_CRASH_DUMP": str(self.base_dir / "erl_crash.dump"),
            }
        )
        return env

    def _ctl(
        self, args: list[str], *, timeout: float, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(RABBITMQ_BIN_DIR / tool), "-n", self.node_name, *args]
        proc = subprocess.Popen(
            cmd,
            env=self._env(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(cmd, proc.returncode, out, None)

    def _force_kill(self, grace: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _signal(proc.pid, signal.SIGTERM)
            _wait_exit(proc, grace)
        self._reap()

    def _reap(self) -> None:
        """Make sure the VM and everything it spawned is gone; forget the process."""
        proc = self._proc
        if proc is None:
            return
        _kill_tree(proc)
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


def _listen_address(address: str) -> str:
    """A specific IPv4 address to listen on; a wildcard would expose the node to every
    interface, which a test node must never do."""
    ip = ipaddress.IPv4Address(address)
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"not a specific local address to listen on: {address}")
    if str(ip) == _HOST:
        raise ValueError(f"{_HOST} is always listened on; do not list it again")
    return str(ip)


# -- process helpers -------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, starttime, comm) of a process, or None if it is gone.

    A zombie counts as gone: it has exited and only waits for its parent to reap it.
    The VM, orphaned when the wrapper script dies with it, is reaped by PID 1, which
    can take a second; waiting for that would only slow ``kill()`` down.
    """
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    lpar, rpar = raw.index("("), raw.rindex(")")
    fields = raw[rpar + 2 :].split()
    # fields[0] is state, [1] ppid, [19] starttime (stat fields 3, 4 and 22).
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19]), raw[lpar + 1 : rpar]


def _descendants(root: int) -> list[tuple[int, int]]:
    """(pid, starttime) of all descendants of ``root`` (epmd excluded: it is shared)."""
    children: dict[int, list[tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None:
            children.setdefault(stat[0], []).append((int(entry), stat[1], stat[2]))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for pid, start, comm in children.get(todo.pop(), []):
            if comm != "epmd":
                found.append((pid, start))
                todo.append(pid)
    return found


def _kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    """SIGKILL the VM if still alive, then whatever it spawned (erl_child_setup and the
    port programs run in sessions of their own, so the process group is not enough)."""
    stragglers = _descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        _killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Port programs normally exit on their own once the VM's pipes close.
    deadline = time.monotonic() + 5.0
    while True:
        alive = [(pid, st) for pid, st in stragglers if _same_process(pid, st)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for pid, st in alive:
        if _same_process(pid, st):
            _signal(pid, signal.SIGKILL)


def _same_process(pid: int, starttime: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[1] == starttime


def _emergency_kill(proc: "subprocess.Popen[bytes]") -> None:
    """Finalizer (also runs at interpreter exit) for a node nobody closed."""
    if proc.poll() is None:
        _signal(proc.pid, signal.SIGTERM)
        _wait_exit(proc, 10.0)
    _kill_tree(proc)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_exit(proc: "subprocess.Popen[bytes]", timeout: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        return False
    return True


# -- network helpers -------------------------------------------------------------------


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int, host: str = _HOST) -> bool:
    # SO_REUSEADDR: TIME_WAIT leftovers of a previous run don't count as "in use" (the
    # broker sets it too), a listening socket does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_free_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range, so an outgoing connection cannot
    grab them between a stop() and the next start()."""
    high = _ephemeral_low() - 1
    low = 20000 if high > 21000 else 1024
    rng = random.SystemRandom()
    picked: list[int] = []
    for _ in range(1000):
        port = rng.randint(low, high)
        if port in _RESERVED_PORTS or port in picked:
            continue
        if _port_is_free(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise RuntimeError(f"could not find {count} free ports in {low}-{high}")


def _wait_port_closed(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((_HOST, port), timeout=1.0):
                pass
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def _epmd_has_name(short_name: str) -> bool:
    """Ask epmd (NAMES_REQ) whether a node with this short name is registered."""
    port = 4369
    try:
        with socket.create_connection((_HOST, port), timeout=2.0) as s:
            s.sendall(b"\x00\x01n")
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except OSError:
        return False  # no epmd: nothing registered
    text = b"".join(chunks)[4:].decode(errors="replace")
    return any(line.split()[1:2] == [short_name] for line in text.splitlines())


# -- minimal AMQP 0-9-1 client (login probe) ------------------------------------------


class _AmqpError(Exception):
    pass


_FRAME_METHOD = 1
_FRAME_END = b"\xce"


def _shortstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def _longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _method_frame(class_id: int, method_id: int, args: bytes) -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", _FRAME_METHOD, 0, len(payload)) + payload + _FRAME_END


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _AmqpError("connection closed by broker")
        buf += chunk
    return buf


def _recv_method(sock: socket.socket, expect: tuple[int, int]) -> bytes:
    while True:
        ftype, _channel, size = struct.unpack(">BHI", _recv_exact(sock, 7))
        payload = _recv_exact(sock, size)
        if _recv_exact(sock, 1) != _FRAME_END:
            raise _AmqpError("bad frame end")
        if ftype != _FRAME_METHOD:
            continue  # heartbeat etc.
        ids = struct.unpack(">HH", payload[:4])
        if ids == expect:
            return payload[4:]
        if ids == (10, 50):  # connection.close
            code = struct.unpack(">H", payload[4:6])[0]
            text = payload[7 : 7 + payload[6]].decode(errors="replace")
            raise _AmqpError(f"broker closed the connection: {code} {text}")
        raise _AmqpError(f"unexpected method {ids}, wanted {expect}")


def _amqp_login(port: int, *, timeout: float, vhost: str = "/") -> None:
    """Full AMQP handshake as guest/guest up to connection.open-ok, then a clean close."""
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        _recv_method(sock, (10, 10))  # connection.start
        start_ok = (
            struct.pack(">I", 0)  # empty client-properties table
            + _shortstr("PLAIN")
            + _longstr(b"\x00guest\x00guest")
            + _shortstr("en_US")
        )
        sock.sendall(_method_frame(10, 11, start_ok))
        tune = _recv_method(sock, (10, 30))  # connection.tune (access refused => close)
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", tune[:8])
        sock.sendall(_method_frame(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        sock.sendall(_method_frame(10, 40, _shortstr(vhost) + _shortstr("") + b"\x00"))
        _recv_method(sock, (10, 41))  # connection.open-ok
        sock.sendall(_method_frame(10, 50, struct.pack(">H", 200) + _shortstr("") + b"\0" * 4))
        _recv_method(sock, (10, 51))  # connection.close-ok
