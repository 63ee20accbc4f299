"""Hosts as Linux network namespaces, for tests of several machines and of a network that fails.

Root only (``ip netns``, veth pairs, ``tc``). Each :class:`Host` is a network namespace joined
to the root namespace by a veth pair on a /30 of its own, 10.213.N.0/30: the namespace's end
(``eth0`` inside) has :attr:`Host.address` (10.213.N.2), the root end has
:attr:`Host.gateway` (10.213.N.1), and the namespace's default route goes through the gateway.
A process started with :meth:`Host.run` has that network and nothing else of its own: files,
users and pids are the machine's.

What a process in a namespace reaches: the gateway, and through it the other addresses of the
root namespace. Not the root namespace's 127.0.0.1: inside a namespace that is the namespace's
own loopback. So **a server in the root namespace that a namespaced process must reach has to
listen on** ``host.gateway`` **(or on 0.0.0.0), not only on 127.0.0.1**; give its clients
``host.gateway`` as the server's host. The root namespace reaches a server in a namespace at
``host.address``. Nothing is forwarded (``net.ipv4.ip_forward`` stays as it is), so namespaces
do not reach each other, nor anything beyond this machine. No global setting is changed.

:meth:`Host.cut` makes the link lose every packet in both directions, like a pulled cable
between the host and the rest: no RST, no ICMP error, open connections stall until their own
timeouts and new ones time out; :meth:`Host.heal` restores it, and stalled connections carry on
(TCP retransmits). Both ends drop with a ``blackhole`` qdisc (built into every kernel that has
``tc`` qdiscs; ``netem`` is a module that not every kernel has, this one not). The neighbour
(ARP) entries of both ends are static: with learned ones, a connect over a cut link fails
after ~3 s with "No route to host" when ARP gives up, which a host behind a router never sees.

Namespaces are named ``aggtN-PID`` after the pid of the test process that made them; a later
:class:`Host` removes those whose process is gone (a run that was killed), with their links.

Usage::

    with Host("worker1") as host:
        server listens on host.gateway ...
        proc = host.run([sys.executable, "-m", "worker"], env=env)
        host.cut()
        ...
        host.heal()
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
import weakref
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from tests.support.netns_links import (
    _PREFIX,
    _create_link,
    _ip,
    _mac,
    _networks_in_use,
    _remove,
    _remove_stale,
    _require_tools,
    _run,
    _subnet,
)

__all__ = ["Host", "service_addresses"]

_INSIDE_DEV = "eth0"


class Host:
    """A network namespace with a veth link to the root namespace; see the module docstring.

    ``label`` is only for messages. The namespace and the link are made here and removed by
    :meth:`close` (also by a finalizer if nobody closes the host), after the processes that
    :meth:`run` started are ended.
    """

    index: int
    name: str
    address: str
    gateway: str

    def __init__(self, label: str = "host") -> None:
        _require_tools()
        _remove_stale()
        self.label = label
        self._procs: list[subprocess.Popen[bytes]] = []
        self._cut = False
        self.index = _create_link()
        self.name = f"{_PREFIX}{self.index}-{os.getpid()}"
        self._finalizer = weakref.finalize(self, _remove, self.name, self.root_dev, self._procs)
        subnet = _subnet(self.index)
        gateway, address = (str(ip) for ip in list(subnet.hosts())[:2])
        self.gateway, self.address = gateway, address
        try:
            n, prefix = self.name, subnet.prefixlen
            _ip(f"netns add {n}")
            _ip(f"link set {self.inside_peer_dev} netns {n}")
            _ip(f"-n {n} link set {self.inside_peer_dev} name {_INSIDE_DEV}")
            _ip(f"addr add {gateway}/{prefix} dev {self.root_dev}")
            _ip(f"-n {n} addr add {address}/{prefix} dev {_INSIDE_DEV}")
            # Static neighbours: a cut link drops packets and nothing else (module docstring).
            mac_root, mac_inside = _mac(self.index, 1), _mac(self.index, 2)
            _ip(f"neigh replace {address} lladdr {mac_inside} dev {self.root_dev} nud permanent")
            _ip(f"-n {n} neigh replace {gateway} lladdr {mac_root} dev {_INSIDE_DEV} nud permanent")
            _ip(f"link set {self.root_dev} up")
            _ip(f"-n {n} link set lo up")
            _ip(f"-n {n} link set {_INSIDE_DEV} up")
            _ip(f"-n {n} route add default via {gateway}")
        except BaseException:
            self.close()
            raise

    @property
    def root_dev(self) -> str:
        """The root namespace's end of the link."""
        return f"{_PREFIX}{self.index}h"

    @property
    def inside_peer_dev(self) -> str:
        # The namespace's end while it is still in the root namespace, before it becomes eth0.
        return f"{_PREFIX}{self.index}n"

    @property
    def exec_prefix(self) -> list[str]:
        """The command that runs a program inside the namespace (it execs the program)."""
        return ["ip", "netns", "exec", self.name]

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the namespace (``ip netns exec``, which execs it: the Popen's
        pid is the program's). Ended by :meth:`close` if still running then.

        ``env`` defaults to ours; other keyword arguments go to :class:`subprocess.Popen`.
        """
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            env=dict(env) if env is not None else None,
            **popen_kwargs,
        )
        self._procs.append(proc)
        return proc

    def call(
        self, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace to completion; its exit code and output (text)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Drop every packet on the link, both ways, silently (a pulled cable)."""
        _run(f"tc qdisc replace dev {self.root_dev} root blackhole")
        _run(f"tc -n {self.name} qdisc replace dev {_INSIDE_DEV} root blackhole")
        self._cut = True

    def heal(self) -> None:
        """Carry packets again; a no-op when the link is not cut."""
        if not self._cut:
            return
        _run(f"tc qdisc del dev {self.root_dev} root")
        _run(f"tc -n {self.name} qdisc del dev {_INSIDE_DEV} root")
        self._cut = False

    def cut_from(self, address: str) -> None:
        """Drop the traffic between this host and one root-namespace ``address`` only.

        For a server that listens on an address of its own (see :func:`service_addresses`):
        this host loses that server, and keeps every other. The kernel here has no tc
        classifiers, so it is routing that drops: a blackhole route inside the namespace (a
        connect fails at once, an open connection stalls) and a policy rule in the root
        namespace for the way back (the server's packets go nowhere, no RST, no ICMP).
        """
        _ip(f"-n {self.name} route add blackhole {address}/32")
        _ip(f"rule add from {address} to {self.address} blackhole")

    def heal_from(self, address: str) -> None:
        """Undo :meth:`cut_from`."""
        _ip(f"-n {self.name} route del blackhole {address}/32")
        _ip(f"rule del from {address} to {self.address} blackhole")

    def close(self) -> None:
        """End the processes started here, remove the namespace and the link; idempotent."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "cut" if self._cut else "linked"
        return f"<Host {self.label} {self.name} {self.address} via {self.gateway} {state}>"


@contextlib.contextmanager
def service_addresses(count: int) -> Iterator[list[str]]:
    """``count`` addresses of our own on the root namespace's loopback, for servers that a
    namespaced host must reach (and lose) one by one: 10.212.0.N/32, removed afterwards.

    Packets from a namespace to them are delivered locally, without forwarding.
    """
    _require_tools()
    used = _networks_in_use()
    chosen: list[str] = []
    try:
        for n in range(1, 255):
            if len(chosen) == count:
                break
            candidate = ipaddress.IPv4Address(f"10.212.0.{n}")
            if any(candidate in net for net in used):
                continue
            _ip(f"addr add {candidate}/32 dev lo")
            chosen.append(str(candidate))
        if len(chosen) < count:
            raise RuntimeError(f"no {count} free addresses left in 10.212.0.0/24")
        yield chosen
    finally:
        for address in chosen:
            subprocess.run(
                ["ip", "addr", "del", f"{address}/32", "dev", "lo"],
                capture_output=True,
                check=False,
            )
