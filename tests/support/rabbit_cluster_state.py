"""What a private RabbitMQ cluster says about itself, asked through its own nodes' CLIs in JSON:
which nodes run, who leads a quorum queue, which client connections a node holds.

Every wait has a deadline and, when it fails, raises :class:`ClusterError` with the tail of the
relevant nodes' logs.
"""

import json
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.support.rabbit_node import RabbitNode

__all__ = ["ClusterError", "Connection", "RabbitClusterState"]


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


class RabbitClusterState:
    """The nodes of a cluster (made by :class:`RabbitCluster`) and what they report."""

    _nodes: tuple[RabbitNode, ...]

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
