"""Ports and names on the loopback for a private RabbitMQ node: free ports to give it, a port
that closed, and whether epmd already knows a node name.

The machine's shared node keeps its ports: they are never handed out.
"""

import pathlib
import random
import socket
import time

HOST = "127.0.0.1"
# Ports we never hand out: epmd, the shared node's AMQP/TLS/management/dist ports and
# the range the CLI tools (rabbitmqctl & co.) use for their own distribution listener.
_RESERVED_PORTS = frozenset({4369, 5671, 5672, 15672, 25672, *range(35672, 35683)})
_POLL_INTERVAL = 0.2


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int, host: str = HOST) -> bool:
    # SO_REUSEADDR: TIME_WAIT leftovers of a previous run don't count as "in use" (the
    # broker sets it too), a listening socket does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int) -> list[int]:
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
        if port_is_free(port):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise RuntimeError(f"could not find {count} free ports in {low}-{high}")


def _wait_port_closed(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
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
        with socket.create_connection((HOST, port), timeout=2.0) as s:
            s.sendall(b"\x00\x01n")
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except OSError:
        return False  # no epmd: nothing registered
    text = b"".join(chunks)[4:].decode(errors="replace")
    return any(line.split()[1:2] == [short_name] for line in text.splitlines())
