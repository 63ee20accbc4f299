"""Making and removing a test host's network namespace and veth link (see ``netns.py``), finding
the networks already in use, and running ``ip`` and ``tc``.

A namespace is named after the pid of the test process that made it, so the ones a killed run
left behind are found and removed, with their links.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

__all__ = ["SUPERNET", "NetnsUnavailable"]

# A /16 that no network here uses (checked per /30 when a host is made).
SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")
_PREFIX = "aggt"
_NAME_RE = re.compile(rf"^{_PREFIX}(\d+)-(\d+)$")
_STOP_GRACE_S = 5.0


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, or no ``ip``/``tc``)."""


def _require_tools() -> None:
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces for tests need root (ip netns, veth, tc)")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(f"missing {', '.join(missing)}: install Debian's iproute2")


def _subnet(index: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.213.{index}.0/30")


def _mac(index: int, end: int) -> str:
    # Locally administered (0x02), and spelling the address: 10.213.index.end.
    return f"02:00:0a:d5:{index:02x}:{end:02x}"


def _create_link() -> int:
    """Make a veth pair for the first free 10.213.N.0/30; its N.

    ``ip link add`` fails when the name exists, so two test processes making hosts at the same
    time cannot take the same N.
    """
    used = _networks_in_use()
    for index in range(256):
        subnet = _subnet(index)
        if any(subnet.overlaps(net) for net in used):
            continue
        root_dev, peer = f"{_PREFIX}{index}h", f"{_PREFIX}{index}n"
        command = (
            f"ip link add {root_dev} address {_mac(index, 1)} type veth"
            f" peer name {peer} address {_mac(index, 2)}"
        )
        result = subprocess.run(command.split(), capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return index
        if "exists" not in result.stderr:
            raise RuntimeError(f"{command} failed: {result.stderr.strip()}")
    raise RuntimeError(f"no free /30 left in {SUPERNET} for another test host")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """The root namespace's IPv4 routes (all tables) and addresses, the default route aside."""
    routes = json.loads(_ip("-j -4 route show table all"))
    addresses = json.loads(_ip("-j -4 addr show"))
    found: list[ipaddress.IPv4Network] = []
    for route in routes:
        dst = route.get("dst", "default")
        if dst != "default":
            found.append(ipaddress.IPv4Network(dst, strict=False))
    for link in addresses:
        for info in link.get("addr_info", []):
            found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False))
    return found


def _remove_stale() -> None:
    """Remove the namespaces (and links) of test processes that are gone."""
    for line in _ip("netns list").splitlines():
        match = _NAME_RE.match(line.split(" ", 1)[0])
        if match is None or Path(f"/proc/{match.group(2)}").exists():
            continue
        _remove(match.group(0), f"{_PREFIX}{match.group(1)}h", [])


def _remove(name: str, root_dev: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """End the processes, then delete the link and the namespace. Also the finalizer, so it
    holds no reference to the Host."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # What those processes started in the namespace and left behind.
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    # Deleting one end of a veth pair deletes both, wherever the other end is.
    subprocess.run(["ip", "link", "del", root_dev], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _ip(command: str) -> str:
    return _run(f"ip {command}")


def _run(command: str) -> str:
    # Our commands' words never contain spaces, so a plain split is exact.
    result = subprocess.run(command.split(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed: {result.stderr.strip()}")
    return result.stdout
