"""A private RabbitMQ node's processes: the Erlang VM and everything it spawned, killed and reaped.

The VM's port programs run in sessions of their own, so a process group is not enough: the tree
is found under ``/proc``, each process known by its pid and start time (a pid can be reused).
epmd is left alone: it is shared.
"""

import os
import pathlib
import signal
import subprocess
import time


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, starttime, comm) of a process, or None if it is gone.

    A zombie counts as gone: it has exited and only waits for its parent to reap it.
    The VM, orphaned when the wrapper script dies with it, is reaped by PID 1, which
    can take a second; waiting for that would only slow ``kill()`` down.
    """
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    lpar, rpar = raw.index("("), raw.rindex(")")
    fields = raw[rpar + 2 :].split()
    # fields[0] is state, [1] ppid, [19] starttime (stat fields 3, 4 and 22).
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19]), raw[lpar + 1 : rpar]


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, starttime) of all descendants of ``root`` (epmd excluded: it is shared)."""
    children: dict[int, list[tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None:
            children.setdefault(stat[0], []).append((int(entry), stat[1], stat[2]))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for pid, start, comm in children.get(todo.pop(), []):
            if comm != "epmd":
                found.append((pid, start))
                todo.append(pid)
    return found


def kill_tree(proc: "subprocess.Popen[bytes]") -> None:
    """SIGKILL the VM if still alive, then whatever it spawned (erl_child_setup and the
    port programs run in sessions of their own, so the process group is not enough)."""
    stragglers = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        kill_group(proc.pid, signal.SIGKILL)
    proc.wait()
    # Port programs normally exit on their own once the VM's pipes close.
    deadline = time.monotonic() + 5.0
    while True:
        alive = [(pid, st) for pid, st in stragglers if _same_process(pid, st)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for pid, st in alive:
        if _same_process(pid, st):
            signal_process(pid, signal.SIGKILL)


def _same_process(pid: int, starttime: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[1] == starttime


def emergency_kill(proc: "subprocess.Popen[bytes]") -> None:
    """Finalizer (also runs at interpreter exit) for a node nobody closed."""
    if proc.poll() is None:
        signal_process(proc.pid, signal.SIGTERM)
        wait_exit(proc, 10.0)
    kill_tree(proc)


def signal_process(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_exit(proc: "subprocess.Popen[bytes]", timeout: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        return False
    return True
