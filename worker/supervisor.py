"""``python -m worker --workers N``: N worker processes on one machine, sharing one store.

Each child is a plain ``python -m worker`` (``AGG_WORKERS=1``) with its own metrics port,
``AGG_METRICS_PORT + i`` (0, off, when the base is 0). The broker spreads deliveries over the
children's consumers; the SQLite file takes one writer at a time (WAL, busy timeout, one
``BEGIN IMMEDIATE`` transaction per batch) and its ``(topic, event_id)`` key decides which
delivery is the first, whichever child holds it.

The supervisor forwards SIGTERM and SIGINT to the children, waits for all of them and exits with
the worst child's status (0 when all exit 0). A child that stops on its own (a crash, the broker
gone past the connect timeout) stops the others too, so whatever runs the supervisor restarts
the group as one; in drain mode a child that exits 0 found the queue empty and leaves the others
to finish theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from aggregator.settings import Settings

log = logging.getLogger(__name__)

# Status when the ports the children would need do not exist.
USAGE_ERROR = 2


@dataclass(frozen=True)
class Child:
    number: int  # 1-based, for the logs
    process: asyncio.subprocess.Process
    metrics_port: int

    @property
    def running(self) -> bool:
        return self.process.returncode is None


def child_metrics_port(base: int, index: int) -> int:
    """The metrics port of child ``index`` (0-based): consecutive ports, or 0 when off."""
    return base + index if base else 0


def child_environment(settings: Settings, index: int) -> dict[str, str]:
    """This process's environment, with the child's own metrics port and no supervision."""
    env = dict(os.environ)
    env["AGG_WORKERS"] = "1"
    env["AGG_METRICS_PORT"] = str(child_metrics_port(settings.metrics_port, index))
    return env


def worst_status(statuses: Iterable[int]) -> int:
    """The exit status to report for the group: 0 if all are 0, else the highest, with a death
    by signal N (``returncode == -N``) counted as the shell does, ``128 + N``."""
    return max((128 - code if code < 0 else code for code in statuses), default=0)


class Supervisor:
    """Starts the children, forwards signals to them, and reaps them."""

    def __init__(self, settings: Settings, *, workers: int, drain: bool) -> None:
        self._settings = settings
        self._workers = workers
        self._drain = drain
        self._children: list[Child] = []
        # Set by the first stop: the signal the children get, including one started after it.
        self._stop_signal: signal.Signals | None = None

    @property
    def _stopping(self) -> bool:
        return self._stop_signal is not None

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """Send ``signum`` to every child still running; start no more."""
        if not self._stopping:
            running = sum(child.running for child in self._children)
            log.info("stopping %d worker(s) with %s", running, signum.name)
        self._stop_signal = signum
        for child in self._children:
            _send(child, signum)

    async def run(self) -> int:
        """Run the children to their end; return the group's exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        try:
            try:
                await self._start_children()
            except OSError as exc:
                log.error("cannot start a worker process: %s", exc)
                self.stop()
                return max(await self._reap_children(), 1)
            return await self._reap_children()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _start_children(self) -> None:
        base_port = self._settings.metrics_port
        for index in range(self._workers):
            if self._stopping:
                return
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "worker",
                *(["--drain"] if self._drain else []),
                env=child_environment(self._settings, index),
            )
            child = Child(index + 1, process, child_metrics_port(base_port, index))
            self._children.append(child)
            if self._stop_signal is not None:
                # The stop came while this child was being started.
                _send(child, self._stop_signal)
            log.info(
                "started worker %d of %d: pid=%d metrics_port=%d%s",
                child.number,
                self._workers,
                process.pid,
                child.metrics_port,
                " (drain mode)" if self._drain else "",
            )

    async def _reap_children(self) -> int:
        waiting = {asyncio.create_task(child.process.wait()): child for child in self._children}
        statuses: list[int] = []
        pending = set(waiting)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                child, status = waiting[task], task.result()
                statuses.append(status)
                log.log(
                    logging.INFO if status == 0 else logging.WARNING,
                    "worker %d (pid=%d) exited with status %d",
                    child.number,
                    child.process.pid,
                    status,
                )
                finished_its_drain = self._drain and status == 0
                if pending and not self._stopping and not finished_its_drain:
                    log.warning("worker %d stopped on its own; stopping the others", child.number)
                    self.stop()
        return worst_status(statuses)


def _send(child: Child, signum: signal.Signals) -> None:
    if child.running:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signum)


def run_workers(settings: Settings, *, workers: int, drain: bool) -> int:
    """``python -m worker --workers N``: supervise N children; the group's exit status."""
    last_port = child_metrics_port(settings.metrics_port, workers - 1)
    if last_port > 65535:
        log.error(
            "%d workers need metrics ports %d-%d; set AGG_METRICS_PORT lower, or 0 to turn "
            "metrics off",
            workers,
            settings.metrics_port,
            last_port,
        )
        return USAGE_ERROR
    return asyncio.run(Supervisor(settings, workers=workers, drain=drain).run())
