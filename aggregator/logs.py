"""One logging set-up for both processes: a line per record, with time, level and logger."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aio-pika logs every reconnect attempt at WARNING already; ours say it once, with context.
    logging.getLogger("aio_pika").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("aiormq").setLevel(max(logging.WARNING, logging.getLogger().level))
