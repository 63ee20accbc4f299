"""Exit 0 when a PostgreSQL server answers at the URL given (a real protocol start-up).

Standard library only, so it runs before the virtualenv exists. It sends the start-up message
for the URL's user and database and reads the answer: the end of a trust login
(ReadyForQuery), or a request for a password, which it cannot send (the server is there; the
tests' own connection checks the credentials). An error from the server, such as "the database
system is starting up" or an unknown role, is printed and counts as no answer. SSL is not
spoken, so a server that insists on it counts as no answer too.
"""

from __future__ import annotations

import socket
import struct
import sys
from urllib.parse import unquote, urlsplit

PROTOCOL_3_0 = 196608
AUTH_OK = 0


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    user = f"{unquote(parts.username)}@" if parts.username else ""
    netloc = f"{user}{parts.hostname or 'localhost'}:{parts.port or 5432}"
    return parts._replace(netloc=netloc).geturl()


def probe(url: str, timeout: float = 3.0) -> str | None:
    """None when a PostgreSQL answers at ``url``, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 5432
    user = unquote(parts.username or "postgres")
    database = unquote(parts.path.lstrip("/")) or user
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_startup(user, database))
            while True:
                kind, body = _read_message(sock)
                if kind == b"R":
                    (code,) = struct.unpack(">i", body[:4])
                    if code != AUTH_OK:
                        return None  # asks for a password: a server is there
                elif kind == b"E":
                    return f"the server refused: {_error_text(body)}"
                elif kind == b"Z":
                    sock.sendall(b"X" + struct.pack(">i", 4))  # Terminate
                    return None
                # ParameterStatus, BackendKeyData, notices: read on.
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    except ValueError as exc:
        return f"not a PostgreSQL answer: {exc}"


def _startup(user: str, database: str) -> bytes:
    params = b"".join(f"{k}\0{v}\0".encode() for k, v in (("user", user), ("database", database)))
    body = struct.pack(">i", PROTOCOL_3_0) + params + b"\0"
    return struct.pack(">i", len(body) + 4) + body


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    kind, length = header[:1], struct.unpack(">i", header[1:])[0]
    if kind not in b"REZSKN" or not 4 <= length <= 1 << 20:
        raise ValueError(f"unexpected message {header!r}")
    return kind, _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def _error_text(body: bytes) -> str:
    # Fields are a type byte and a NUL-terminated string each; 'M' is the message.
    fields = {f[:1]: f[1:].decode(errors="replace") for f in body.split(b"\0") if f}
    return fields.get(b"M", "unknown error")


if __name__ == "__main__":
    why = probe(sys.argv[1])
    if why is not None:
        sys.stderr.write(f"postgres: nothing answers at {describe(sys.argv[1])}: {why}\n")
    sys.exit(0 if why is None else 1)
