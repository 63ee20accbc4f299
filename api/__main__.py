"""``python -m api``: serve the HTTP API with uvicorn on AGG_HOST:AGG_PORT."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from aggregator.logs import configure_logging
from aggregator.settings import Settings
from api.app import create_app

log = logging.getLogger("api")

# Exit status when the address cannot be had: a configuration error, not a crash.
EXIT_CANNOT_BIND = 2


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


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


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d: %s; set AGG_PORT (or AGG_HOST) to a free address",
            settings.host,
            settings.port,
            exc.strerror or exc,
        )
        return EXIT_CANNOT_BIND
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler
    # it found at start; with the default one the process dies of it (exit -15) after a clean
    # shutdown. The contract says exit 0, so the handler it finds exits 0. (Ctrl-C already
    # does: the re-raised SIGINT is a KeyboardInterrupt that uvicorn.run catches.)
    signal.signal(signal.SIGTERM, _exit_zero)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=8,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
