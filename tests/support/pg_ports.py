"""A port for a private PostgreSQL server: free on the loopback, below the ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # TIME_WAIT leftovers of a previous start do not count; a listening socket does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_free_port() -> int:
    high = _ephemeral_low() - 1
    low = 20000 if high > 21000 else 1024
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(low, high)
        if port != 5432 and port_is_free(HOST, port):
            return port
    raise RuntimeError(f"no free port in {low}-{high}")
