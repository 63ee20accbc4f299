"""A private, throwaway RabbitMQ cluster of a few nodes on this machine, for failover tests.

It owns ``size`` :class:`RabbitNode` s under ``base_dir`` (``node0``, ``node1``, ...), each
with its own node name, AMQP and distribution ports, data and log directories, all sharing
one Erlang cookie made for this cluster, so they can talk to each other and nobody else
can.  The machine's shared broker (``rabbit@localhost`` on 127.0.0.1:5672) is never
addressed: every CLI call goes through a private node's ``ctl`` (``-n`` its name, its
$HOME and cookie), and joining only ever names this cluster's own nodes.

Forming the cluster: all nodes boot in parallel, then node 1.. each do ``stop_app``,
``join_cluster <node0>``, ``start_app`` (the joins one at a time: concurrent schema joins
to the same node are what 3.10's peer discovery takes a lock against), then we wait until
every node's ``cluster_status`` lists all nodes as running.

Faults: ``kill9(i)`` crashes a node (SIGKILL of its whole Erlang VM), ``stop(i)`` shuts it
down cleanly, ``start(i)`` brings it back as the same node on its own data, and it rejoins
on its own (a cluster member remembers its peers).  Everything that waits has a deadline
and, when it fails, raises :class:`ClusterError` with the tail of the relevant nodes' logs.

Usage::

    with RabbitCluster(tmp_path / "cluster") as cluster:
        ...declare a quorum queue through cluster.urls[0]...
        leader = cluster.leader_of("q")
        cluster.kill9(leader)
        cluster.wait_quorum_leader("q")
        cluster.start(leader)
"""

import json
import pathlib
import secrets
import subprocess
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tests.support.rabbit_node import RabbitNode

__all__ = ["ClusterError", "Connection", "RabbitCluster"]


_POLL_INTERVAL = 0.25
# One CLI call; they take about half a second here, a minute means something is stuck.
_CTL_TIMEOUT = 60.0


class ClusterError(RuntimeError):
    """The cluster did not reach the state asked for (the message has the log tails)."""


@dataclass(frozen=True)
class Connection:
    """A client connection as ``rabbitmqctl list_connections`` reports it."""

    name: str
    #: The address and port the client connected to: one of the node's listeners.
    host: str
    port: int
    client_properties: dict[str, Any]


class RabbitCluster:
    """``size`` private RabbitMQ nodes under ``base_dir``, joined into one cluster.

    ``base_dir`` must be new or empty: the cluster is formed afresh by :meth:`start_all`
    (or entering the context).  ``extra_listen_addresses`` and ``extra_config`` go to
    every node (see :class:`RabbitNode`); each node listens on its own AMQP port on every
    address.
    """

    base_dir: pathlib.Path

    def __init__(
        self,
        base_dir: pathlib.Path,
        size: int = 3,
        *,
        extra_listen_addresses: Sequence[str] = (),
        extra_config: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got size={size}")
        self.base_dir = pathlib.Path(base_dir).resolve()
        if self.base_dir.exists() and any(self.base_dir.iterdir()):
            raise ValueError(f"{self.base_dir} is not empty; a cluster is formed afresh")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # A common prefix makes the nodes of one cluster easy to spot in epmd and ps.
        prefix = f"rmqc{secrets.token_hex(3)}"
        cookie = secrets.token_hex(20).upper()
        self._nodes = tuple(
            RabbitNode(
                self.base_dir / f"node{i}",
                name=f"{prefix}-{i}",
                cookie=cookie,
                extra_listen_addresses=extra_listen_addresses,
                extra_config=extra_config,
            )
            for i in range(size)
        )
        self._formed = False

    # -- what the cluster is -------------------------------------------------------------

    @property
    def nodes(self) -> tuple[RabbitNode, ...]:
        return self._nodes

    @property
    def urls(self) -> list[str]:
        """One AMQP URL (guest, 127.0.0.1) per node, by index."""
        return [node.url for node in self._nodes]

    @property
    def node_names(self) -> list[str]:
        return [node.node_name for node in self._nodes]

    def index_of(self, node_name: str) -> int:
        """The index of the node called ``node_name`` (ValueError if it is not ours)."""
        try:
            return self.node_names.index(node_name)
        except ValueError:
            raise ValueError(f"{node_name!r} is not a node of this cluster") from None

    def running(self) -> list[int]:
        """Indices of the nodes whose Erlang VM is alive (our processes, not a cluster view)."""
        return [i for i, node in enumerate(self._nodes) if node.is_running()]

    # -- life cycle ----------------------------------------------------------------------

    def start_all(self, timeout: float = 120.0) -> None:
        """Start every stopped node in parallel; the first time, also join them into one
        cluster.  Returns once every node's ``cluster_status`` shows all nodes running.

        On failure raises ClusterError; nodes already started keep running until
        :meth:`close` (a context manager does that).
        """
        deadline = time.monotonic() + timeout
        stopped = [i for i in range(len(self._nodes)) if not self._nodes[i].is_running()]
        # Booting is mostly single-threaded Erlang start-up work, so the nodes overlap well
        # even on two cores: three in parallel take about as long as one and a half.
        self._in_parallel(stopped, lambda i: self._nodes[i].start(_remaining(deadline)))
        if not self._formed:
            self._form(deadline)
            self._formed = True
        self.wait_running(timeout=_remaining(deadline))

    def kill9(self, i: int) -> None:
        """Crash node ``i``: SIGKILL its whole Erlang VM, no clean shutdown.  Returns once
        the VM is gone; its peers notice at once (the distribution socket closes)."""
        self._nodes[i].kill()

    def stop(self, i: int, timeout: float = 30.0) -> None:
        """Shut node ``i`` down cleanly (``rabbitmqctl shutdown``)."""
        self._nodes[i].stop(timeout)

    def start(self, i: int, timeout: float = 90.0) -> None:
        """Start node ``i`` again (same name, ports and data) and wait until every running
        node's ``cluster_status`` lists it as running again, i.e. it rejoined."""
        deadline = time.monotonic() + timeout
        self._nodes[i].start(_remaining(deadline))
        self.wait_running(timeout=_remaining(deadline))

    def close(self) -> None:
        """Stop every node (in parallel, cleanly where possible); idempotent.

        Never leaves a process behind: a node that does not stop in time is killed.
        Raises ClusterError afterwards if any node had to be killed.
        """
        errors: list[str] = []
        lock = threading.Lock()

        def close_one(node: RabbitNode) -> None:
            try:
                node.close()
            except Exception as exc:  # collected: the others still close
                with lock:
                    errors.append(f"{node.node_name}: {exc}")

        with ThreadPoolExecutor(max_workers=len(self._nodes)) as pool:
            list(pool.map(close_one, self._nodes))
        if errors:
            raise ClusterError("cluster did not close cleanly:\n" + "\n".join(errors))

    def __enter__(self) -> "RabbitCluster":
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RabbitCluster {self.node_names} running={self.running()} in {self.base_dir}>"

    # -- cluster state -------------------------------------------------------------------

    def running_nodes(self, via: int) -> set[str]:
        """The node names that node ``via``'s ``cluster_status`` reports as running."""
        status = self._ctl_json(via, "cluster_status", "--formatter", "json")
        return set(status["running_nodes"])

    def wait_running(self, timeout: float = 60.0) -> None:
        """Wait until every node whose VM is alive lists exactly those nodes as running."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            alive = self.running()
            expected = {self._nodes[i].node_name for i in alive}
            views: dict[str, object] = {}
            for i in alive:
                try:
                    views[self._nodes[i].node_name] = sorted(self.running_nodes(i))
                except ClusterError as exc:
                    views[self._nodes[i].node_name] = f"error: {exc.args[0].splitlines()[0]}"
            if alive and all(view == sorted(expected) for view in views.values()):
                return
            last = f"expected {sorted(expected)} running; cluster_status views: {views}"
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"cluster did not settle within {timeout:.0f}s: {last}"
                    f"{self._log_tails(range(len(self._nodes)))}"
                )
            time.sleep(_POLL_INTERVAL)  # poll interval with a deadline

    def quorum_status(self, queue: str, vhost: str = "/") -> dict[int, str]:
        """Raft state of each member of quorum queue ``queue``, by node index, as a
        running node sees it: ``leader``, ``follower``, ``candidate``, ... or
        ``nodedown`` / ``noproc`` (``rabbitmq-queues quorum_status``, which asks each
        member's Ra server, rather than the queue record ``list_queues leader`` reads)."""
        rows = self._ctl_json(
            self._any_running(),
            "quorum_status",
            "-p",
            vhost,
            queue,
            "--formatter",
            "json",
            tool="rabbitmq-queues",
        )
        states: dict[int, str] = {}
        for row in rows:
            state = row["Raft State"]
            # A member that cannot be asked shows up as ["nodedown", Node] or similar.
            if isinstance(state, list):
                state = str(state[0]) if state else "unknown"
            states[self.index_of(row["Node Name"])] = str(state)
        return states

    def leader_of(self, queue: str, vhost: str = "/") -> int:
        """Index of the node whose Ra server leads quorum queue ``queue`` right now.

        Raises LookupError if no member is leader (an election is under way)."""
        leaders = [i for i, state in self.quorum_status(queue, vhost).items() if state == "leader"]
        if len(leaders) != 1:
            raise LookupError(f"quorum queue {queue!r} has leaders {leaders}, wanted one")
        return leaders[0]

    def wait_quorum_leader(self, queue: str, vhost: str = "/", timeout: float = 30.0) -> int:
        """Wait until quorum queue ``queue`` has a leader on a running node; its index."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                leader = self.leader_of(queue, vhost)
                if self._nodes[leader].is_running():
                    return leader
                last = f"leader is {self._nodes[leader].node_name}, which is not running"
            except (LookupError, ClusterError) as exc:
                last = str(exc).splitlines()[0]
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"no leader for quorum queue {queue!r} on a running node within "
                    f"{timeout:.0f}s: {last}{self._log_tails(self.running())}"
                )
            time.sleep(_POLL_INTERVAL)  # poll interval with a deadline

    def connections_on(self, i: int) -> list[Connection]:
        """The client connections node ``i`` itself holds.

        ``list_connections`` lists the whole cluster's and 3.10 has no ``node`` column
        (``pid`` prints as ``#PID<10987.681.0>``, no node name), so they are told apart
        by the server-side port: each node has its own AMQP port.
        """
        rows = self._ctl_json(
            i,
            "list_connections",
            "name",
            "host",
            "port",
            "client_properties",
            "--formatter",
            "json",
        )
        port = self._nodes[i].amqp_port
        return [
            Connection(
                name=row["name"],
                host=_address(row["host"]),
                port=int(row["port"]),
                client_properties=_properties(row["client_properties"]),
            )
            for row in rows
            if int(row["port"]) == port
        ]

    # -- internals -----------------------------------------------------------------------

    def _form(self, deadline: float) -> None:
        seed = self._nodes[0].node_name
        joiners = range(1, len(self._nodes))
        self._in_parallel(joiners, lambda i: self._ctl_ok(i, deadline, "stop_app"))
        for i in joiners:
            self._ctl_ok(i, deadline, "join_cluster", seed)
        self._in_parallel(joiners, lambda i: self._ctl_ok(i, deadline, "start_app"))

    def _in_parallel(self, indices: Iterable[int], action: Callable[[int], None]) -> None:
        """Run ``action`` for each node index in its own thread; all run to the end, then
        the failures (if any) are raised together."""
        indices = list(indices)
        if not indices:
            return
        errors: list[str] = []
        lock = threading.Lock()

        def run(i: int) -> None:
            try:
                action(i)
            except Exception as exc:  # collected and raised below
                with lock:
                    errors.append(f"[{self._nodes[i].node_name}] {exc}")

        with ThreadPoolExecutor(max_workers=len(indices)) as pool:
            list(pool.map(run, indices))
        if errors:
            raise ClusterError("\n\n".join(errors))

    def _ctl_ok(self, i: int, deadline: float, *args: str) -> None:
        node = self._nodes[i]
        try:
            result = node.ctl(*args, timeout=_remaining(deadline))
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"rabbitmqctl {' '.join(args)} on {node.node_name} did not finish in time"
                f"{node.log_tail()}"
            ) from None
        if result.returncode != 0:
            raise ClusterError(
                f"rabbitmqctl {' '.join(args)} on {node.node_name} exited "
                f"{result.returncode}: {result.stdout.strip()}{node.log_tail()}"
            )

    def _ctl_json(self, i: int, *args: str, tool: str = "rabbitmqctl") -> Any:
        node = self._nodes[i]
        try:
            result = node.ctl(*args, timeout=_CTL_TIMEOUT, tool=tool)
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"{tool} {' '.join(args)} on {node.node_name} did not answer within "
                f"{_CTL_TIMEOUT:.0f}s{node.log_tail()}"
            ) from None
        if result.returncode != 0:
            raise ClusterError(
                f"{tool} {' '.join(args)} on {node.node_name} exited {result.returncode}: "
                f"{result.stdout.strip()}"
            )
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise ClusterError(
                f"{tool} {' '.join(args)} on {node.node_name} printed no JSON: "
                f"{result.stdout.strip()[:2000]}"
            ) from None

    def _any_running(self) -> int:
        running = self.running()
        if not running:
            raise ClusterError("no node of the cluster is running")
        return running[0]

    def _log_tails(self, indices: Iterable[int]) -> str:
        return "".join(self._nodes[i].log_tail() for i in indices)


def _remaining(deadline: float) -> float:
    """Time left until ``deadline``, at least one second so a last attempt is possible."""
    return max(1.0, deadline - time.monotonic())


def _address(raw: Any) -> str:
    """An IP address as the JSON formatter gives it: ``[127, 0, 0, 1]`` or a string."""
    if isinstance(raw, list):
        return ".".join(str(part) for part in raw)
    return str(raw)


def _properties(raw: Any) -> dict[str, Any]:
    """Client properties as a dict; the JSON formatter gives AMQP tables either as an
    object or as ``[key, type, value]`` triples, depending on the version."""
    if isinstance(raw, dict):
        return raw
    table: dict[str, Any] = {}
    for item in raw or []:
        if isinstance(item, list) and len(item) == 3:
            key, _type, value = item
            table[str(key)] = _properties(value) if _type == "table" else value
    return table
