"""Fault injection for worker subprocesses: on their PYTHONPATH, Python imports this at start.

``AGG_TEST_KILL_ON=<event_id>``: the process SIGKILLs itself whenever it is about to store that
event, as a driver segfault or the OOM killer would: a message that kills the process every
time. Only tests set it (tests/support/processes.py, ``fault_env``); the product has no hook.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

_victim = os.environ.get("AGG_TEST_KILL_ON")

if _victim:
    from aggregator.events import Event
    from aggregator.store import StoreResult
    from aggregator.store.sqlite import SqliteStore

    _original = SqliteStore.store_events

    async def _store_events(self: SqliteStore, events: Sequence[Event]) -> StoreResult:
        if any(event.event_id == _victim for event in events):
            os.kill(os.getpid(), signal.SIGKILL)
        return await _original(self, events)

    SqliteStore.store_events = _store_events  # type: ignore[method-assign]
