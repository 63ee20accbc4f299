"""A minimal AMQP 0-9-1 client, stdlib only: a guest/guest login that says a node is ready."""

import socket
import struct

from tests.support.rabbit_ports import HOST


class AmqpError(Exception):
    pass


_FRAME_METHOD = 1
_FRAME_END = b"\xce"


def _shortstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def _longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _method_frame(class_id: int, method_id: int, args: bytes) -> bytes:
    payload = struct.pack(">HH", class_id, method_id) + args
    return struct.pack(">BHI", _FRAME_METHOD, 0, len(payload)) + payload + _FRAME_END


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AmqpError("connection closed by broker")
        buf += chunk
    return buf


def _recv_method(sock: socket.socket, expect: tuple[int, int]) -> bytes:
    while True:
        ftype, _channel, size = struct.unpack(">BHI", _recv_exact(sock, 7))
        payload = _recv_exact(sock, size)
        if _recv_exact(sock, 1) != _FRAME_END:
            raise AmqpError("bad frame end")
        if ftype != _FRAME_METHOD:
            continue  # heartbeat etc.
        ids = struct.unpack(">HH", payload[:4])
        if ids == expect:
            return payload[4:]
        if ids == (10, 50):  # connection.close
            code = struct.unpack(">H", payload[4:6])[0]
            text = payload[7 : 7 + payload[6]].decode(errors="replace")
            raise AmqpError(f"broker closed the connection: {code} {text}")
        raise AmqpError(f"unexpected method {ids}, wanted {expect}")


def amqp_login(port: int, *, timeout: float, vhost: str = "/") -> None:
    """Full AMQP handshake as guest/guest up to connection.open-ok, then a clean close."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        _recv_method(sock, (10, 10))  # connection.start
        start_ok = (
            struct.pack(">I", 0)  # empty client-properties table
            + _shortstr("PLAIN")
            + _longstr(b"\x00guest\x00guest")
            + _shortstr("en_US")
        )
        sock.sendall(_method_frame(10, 11, start_ok))
        tune = _recv_method(sock, (10, 30))  # connection.tune (access refused => close)
        channel_max, frame_max, _heartbeat = struct.unpack(">HIH", tune[:8])
        sock.sendall(_method_frame(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
        sock.sendall(_method_frame(10, 40, _shortstr(vhost) + _shortstr("") + b"\x00"))
        _recv_method(sock, (10, 41))  # connection.open-ok
        sock.sendall(_method_frame(10, 50, struct.pack(">H", 200) + _shortstr("") + b"\0" * 4))
        _recv_method(sock, (10, 51))  # connection.close-ok
