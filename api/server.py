"""Serving the app: the listening socket, and uvicorn with a deadline on slow request headers.

uvicorn has a keep-alive timeout but no deadline on a request's headers: a client that sends a
few bytes and then nothing keeps its connection (and a file descriptor) forever, and one byte
now and then even cancels the keep-alive timer. :class:`HeaderDeadlineProtocol` closes a
connection whose request headers are not complete within ``AGG_HEADER_TIMEOUT_S`` of its first
byte (or of the connection, for the first request). The body has its own deadline, applied
where it is read (``AGG_BODY_TIMEOUT_S``, answered with 408).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a taken port ends the process now.

    Left to uvicorn, a bind failure is logged after the app's lifespan has started its
    background tasks, and the process can keep running half up.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def header_deadline_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline of ``timeout_s`` on request headers."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol
