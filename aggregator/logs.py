"""One logging set-up for both processes: a line per record, with time, level and logger."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aio-pika logs a line per reconnect attempt; ours say it once per loss, with context.
    logging.getLogger("aio_pika").setLevel(max(logging.ERROR, logging.getLogger().level))
    logging.getLogger("aiormq").setLevel(max(logging.WARNING, logging.getLogger().level))
