"""Exit 0 when an AMQP 0-9-1 broker answers at the URL given (a real protocol handshake).

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


if __name__ == "__main__":
    sys.exit(0 if broker_answers(sys.argv[1]) else 1)
