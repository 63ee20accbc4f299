"""Exit 0 when an AMQP 0-9-1 broker answers at the URL given, or at any of a comma-separated
list of them (a real protocol handshake).

Standard library only, so it runs before the virtualenv exists.
"""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlsplit

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


def broker_answers(url: str, timeout: float = 3.0) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(PROTOCOL_HEADER)
            frame = sock.recv(11)
    except OSError:
        return False
    # A method frame (type 1) on channel 0 carrying connection.start (class 10, method 10).
    return len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a"


def any_answers(urls: str) -> bool:
    return any(broker_answers(url.strip()) for url in urls.split(",") if url.strip())


def where(urls: str) -> str:
    """The brokers' host:port list, for messages: no user, no password."""
    parts = [urlsplit(url.strip()) for url in urls.split(",") if url.strip()]
    return ",".join(f"{p.hostname or 'localhost'}:{p.port or 5672}" for p in parts)


if __name__ == "__main__":
    if sys.argv[1] == "--where":
        print(where(sys.argv[2]))  # noqa: T201 (a command-line tool's answer)
        sys.exit(0)
    sys.exit(0 if any_answers(sys.argv[1]) else 1)
