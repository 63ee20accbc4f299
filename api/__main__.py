"""``python -m api``: serve the HTTP API with uvicorn on AGG_HOST:AGG_PORT."""

from __future__ import annotations

import uvicorn

from aggregator.logs import configure_logging
from aggregator.settings import Settings
from api.app import create_app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=8,
    )


if __name__ == "__main__":
    main()
