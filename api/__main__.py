"""``python -m api``: serve the HTTP API with uvicorn on AGG_HOST:AGG_PORT."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from types import FrameType

import uvicorn

from aggregator.logs import configure_logging
from aggregator.settings import Settings, SettingsError, load_settings
from api.app import create_app
from api.keys import KeysFileError
from api.server import bind, header_deadline_protocol

log = logging.getLogger("api")

# Exit status for a configuration the API will not run with: not a crash.
EXIT_CONFIGURATION = 2


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refusal(settings: Settings) -> str | None:
    """Why the API must not start with these settings, or None. Without keys, anyone who
    reaches the port may publish and read, so only loopback is allowed unless auth is off."""
    if settings.api_keys_file is None and settings.auth != "off" and not is_loopback(settings.host):
        return (
            f"refusing to listen on {settings.host} without API keys: set AGG_API_KEYS_FILE, or"
            " AGG_AUTH=off to serve anyone who reaches the port, or AGG_HOST=127.0.0.1"
        )
    return None


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        configure_logging("INFO")
        log.error("%s", exc)
        return EXIT_CONFIGURATION
    configure_logging(settings.log_level)
    why_not = refusal(settings)
    if why_not is not None:
        log.error("%s", why_not)
        return EXIT_CONFIGURATION
    if settings.api_keys_file is None and not is_loopback(settings.host):
        log.warning(
            "AGG_AUTH=off: no API keys; anyone who reaches %s:%d may publish and read",
            settings.host,
            settings.port,
        )
    try:
        app = create_app(settings)
    except KeysFileError as exc:
        log.error("%s", exc)
        return EXIT_CONFIGURATION
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d: %s; set AGG_PORT (or AGG_HOST) to a free address",
            settings.host,
            settings.port,
            exc.strerror or exc,
        )
        return EXIT_CONFIGURATION
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler
    # it found at start; with the default one the process dies of it (exit -15) after a clean
    # shutdown. The contract says exit 0, so the handler it finds exits 0. (Ctrl-C already
    # does: the re-raised SIGINT is a KeyboardInterrupt, caught below.)
    signal.signal(signal.SIGTERM, _exit_zero)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=8,
        access_log=settings.access_log,
        http=header_deadline_protocol(settings.header_timeout_s),
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
