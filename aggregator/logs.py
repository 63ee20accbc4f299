"""One logging set-up for both processes: a line per record, with time, level and logger.

Log lines carry strings that clients chose (event ids, routing keys, field names in a validation
error). A client must not be able to write a line that looks like the process's own, so every
record's message is made one line here, once, whatever the call site passed in.
"""

from __future__ import annotations

import logging
import re

# C0 and C1 control characters, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), cut to ``limit`` chars."""
    line = _CONTROL.sub(_escape, text)
    if limit is not None and len(line) > limit:
        line = line[: max(limit - 1, 0)] + "…"
    return line


class OneLineFormatter(logging.Formatter):
    """The message of every record escaped to one line; a traceback still follows on its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = one_line(record.message)
        return super().formatMessage(record)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aio-pika and aiormq log a line (an ERROR, for aiormq) per connect attempt; ours say it
    # once per change of state, with context (aggregator/connection.py).
    logging.getLogger("aio_pika").setLevel(max(logging.ERROR, logging.getLogger().level))
    logging.getLogger("aiormq").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
