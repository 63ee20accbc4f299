"""``python -m api``: serve the HTTP API with uvicorn on AGG_HOST:AGG_PORT."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from aggregator.logs import configure_logging
from aggregator.settings import Settings
from api.app import create_app


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler
    # it found at start; with the default one the process dies of it (exit -15) after a clean
    # shutdown. The contract says exit 0, so the handler it finds exits 0. (Ctrl-C already
    # does: the re-raised SIGINT is a KeyboardInterrupt that uvicorn.run catches.)
    signal.signal(signal.SIGTERM, _exit_zero)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=8,
    )


if __name__ == "__main__":
    main()
