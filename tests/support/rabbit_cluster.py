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

import pathlib
import secrets
import subprocess
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tests.support.rabbit_cluster_state import ClusterError, RabbitClusterState
from tests.support.rabbit_node import RabbitNode

__all__ = ["RabbitCluster"]


class RabbitCluster(RabbitClusterState):
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


def _remaining(deadline: float) -> float:
    """Time left until ``deadline``, at least one second so a last attempt is possible."""
    return max(1.0, deadline - time.monotonic())
