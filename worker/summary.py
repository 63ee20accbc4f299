"""One INFO line every ~10 s while the worker is busy: what it stored, dropped, dead-lettered.

Each duplicate has its own line at DEBUG; at INFO a busy worker would otherwise write one per
repeat (4,000 for the README's demo), and an idle one writes nothing.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("worker.consumer")

INTERVAL_S = 10.0


class ActivitySummary:
    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._since = time.monotonic()
        self._stored = self._duplicates = self._poison = 0

    def add(self, stored: int, duplicates: int, poison: int) -> None:
        """Count one batch; say so when the interval is over."""
        self._stored += stored
        self._duplicates += duplicates
        self._poison += poison
        if time.monotonic() - self._since >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        """Say what was counted since the last line, if anything (also when the worker stops)."""
        now = time.monotonic()
        if self._stored or self._duplicates or self._poison:
            log.info(
                "in the last %.0fs: stored %d, duplicates dropped %d, dead-lettered %d",
                now - self._since,
                self._stored,
                self._duplicates,
                self._poison,
            )
        self._since = now
        self._stored = self._duplicates = self._poison = 0
