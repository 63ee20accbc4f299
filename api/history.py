"""The counters over the last minutes, for the page's rate chart.

Recorded here rather than in the browser so the chart has its history the moment the page
opens. The store gauges' timer (aggregator/metrics.py) hands each reading of the store to
:meth:`StatsHistory.record`: one reader of the store, not one per use. A reading that failed
(the store down) is simply missing: a gap in the chart, not an error.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from aggregator.store import Stats

WINDOW_S = 15 * 60.0
MOST_SAMPLES = 900  # the answer stays small however short AGG_METRICS_INTERVAL_S is


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the epoch
    received: int
    unique_processed: int
    duplicate_dropped: int
    dead_lettered: int


class StatsHistory:
    def __init__(self, interval_s: float, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        keep = min(MOST_SAMPLES, max(2, round(window_s / interval_s)))
        self.samples: deque[Sample] = deque(maxlen=keep)

    def record(self, stats: Stats) -> None:
        self.samples.append(
            Sample(
                time.time(),
                stats.received,
                stats.unique_processed,
                stats.duplicate_dropped,
                stats.dead_lettered,
            )
        )
