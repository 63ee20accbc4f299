"""A private PostgreSQL server's processes: the postmaster and every process it started, found
under ``/proc`` by pid and start time, killed and reaped together."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

PG_POLL_INTERVAL_S = 0.05


def kill_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the postmaster and every process it started, reap it, and wait until they are
    dead. Its children each run in a session of their own, so its process group is not enough;
    and a busy backend would only notice its postmaster's death at its next wait, holding the
    shared memory that a new postmaster on this data directory must find free.

    Killed children are reparented to PID 1; where that does not reap (some containers), they
    stay zombies: dead, holding nothing but their pid.
    """
    children: list[tuple[int, int]] = []
    # Only while the postmaster is unreaped: until then its pid cannot be reused.
    if proc.returncode is None:
        children = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        for pid, started in children:
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10.0
    while any(_alive(pid, started) for pid, started in children):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"postgres processes survived SIGKILL: {children}")
        time.sleep(PG_POLL_INTERVAL_S)  # poll interval with a deadline


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # After the ")" closing the command name: state, ppid, ..., start time (fields 3, 4, 22).
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int, started: int) -> bool:
    """True while that very process (not a later one with its pid) runs; a zombie is dead."""
    stat = _proc_stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in ("Z", "X")


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every descendant of ``root``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        stat = _proc_stat(int(entry)) if entry.isdigit() else None
        if stat is not None:
            children.setdefault(stat[1], []).append((int(entry), stat[2]))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        return False
    return True
