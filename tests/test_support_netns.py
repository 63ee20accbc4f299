"""The network-namespace hosts: reaching the root namespace, a cut that stalls, a heal."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import Host, service_addresses
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.slow

# Connects once and says how it went: connected, timeout, refused or the error.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print(f"error: {exc!r}")
"""

# Echoes what it receives on one connection.
ECHO = """
import socket, sys
with socket.create_server((sys.argv[1], int(sys.argv[2]))) as server:
    connection, _ = server.accept()
    while data := connection.recv(1024):
        connection.sendall(data)
"""
ECHO_PORT = 7000  # the namespace is new: every port in it is free

CUT_TIMEOUT_S = 1.0


@pytest.fixture
def host() -> Iterator[Host]:
    with Host("test") as made:
        yield made


@pytest.fixture
def listener(host: Host) -> Iterator[socket.socket]:
    """A TCP server in the root namespace, on the host's gateway address."""
    with socket.create_server((host.gateway, 0)) as server:
        yield server


def connect_from(host: Host, address: str, port: int, timeout: float = 5.0) -> str:
    result = host.call([sys.executable, "-c", CONNECT, address, str(port), str(timeout)])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_process_in_the_host_reaches_a_server_on_the_gateway(
    host: Host, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    assert connect_from(host, host.gateway, port) == "connected"
    # The link carries RSTs while it is up, and 127.0.0.1 is the namespace's own loopback.
    listener.close()
    assert connect_from(host, host.gateway, port) == "refused"
    assert connect_from(host, "127.0.0.1", port) == "refused"


def test_a_cut_link_stalls_a_connect_and_a_heal_restores_it(
    host: Host, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    host.cut()
    assert host.is_cut
    started = time.monotonic()
    assert connect_from(host, host.gateway, port, timeout=CUT_TIMEOUT_S) == "timeout"
    assert time.monotonic() - started >= CUT_TIMEOUT_S
    host.heal()
    assert connect_from(host, host.gateway, port) == "connected"


def test_a_cut_link_stalls_an_open_connection_without_a_reset(host: Host) -> None:
    echo = host.run([sys.executable, "-c", ECHO, host.address, str(ECHO_PORT)])
    with _connect_when_listening(host.address, ECHO_PORT, echo) as client:
        client.settimeout(CUT_TIMEOUT_S)
        client.sendall(b"one")
        assert client.recv(16) == b"one"
        host.cut()
        client.sendall(b"two")  # no error: the packets just vanish
        with pytest.raises(TimeoutError):
            client.recv(16)
        host.heal()
        client.settimeout(15)  # TCP retransmits with backoff; the next try gets through
        assert client.recv(16) == b"two"


def test_closing_a_host_removes_its_namespace_link_and_processes() -> None:
    with Host("short-lived") as host:
        sleeper = host.run(["sleep", "60"])
        name, root_dev = host.name, host.root_dev
        assert Path(f"/sys/class/net/{root_dev}").exists()
    assert sleeper.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert name not in listed.stdout
    assert not Path(f"/sys/class/net/{root_dev}").exists()


def test_a_private_postgres_on_the_gateway_serves_the_host(host: Host) -> None:
    with PrivatePostgres(listen=("127.0.0.1", host.gateway)) as server:
        probe = REPO_ROOT / "scripts" / "pg_probe.py"
        result = host.call([sys.executable, str(probe), server.url_at(host.gateway)])
        assert result.returncode == 0, result.stderr
        # What it listens on for the root namespace's own clients still works too.
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")


def _connect_when_listening(
    address: str, port: int, server: subprocess.Popen[bytes], timeout: float = 10.0
) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((address, port), timeout=1.0)
        except ConnectionRefusedError:
            if server.poll() is not None or time.monotonic() >= deadline:
                raise
        time.sleep(0.05)  # poll interval with a deadline


def test_cut_from_one_address_keeps_the_others(host: Host) -> None:
    with (
        service_addresses(2) as (lost, kept),
        socket.create_server((lost, 0)) as lost_server,
        socket.create_server((kept, 0)) as kept_server,
    ):
        lost_port, kept_port = lost_server.getsockname()[1], kept_server.getsockname()[1]
        assert connect_from(host, lost, lost_port) == "connected"
        host.cut_from(lost)
        try:
            # The blackhole route refuses a new connection at once (EINVAL), nothing is sent.
            assert connect_from(host, lost, lost_port, CUT_TIMEOUT_S) != "connected"
            assert connect_from(host, kept, kept_port) == "connected"
        finally:
            host.heal_from(lost)
        assert connect_from(host, lost, lost_port) == "connected"
