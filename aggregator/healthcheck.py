"""``python -m aggregator.healthcheck``: the image's one HEALTHCHECK, for either process.

The image runs ``python -m api`` or ``python -m worker``; which one is read from the container's
PID 1 command line, and that process is asked over loopback:

* the API: ``GET /healthz`` on ``AGG_PORT``;
* the worker: ``GET /metrics`` on ``AGG_METRICS_PORT``, which must answer with the worker's own
  counters; with ``--workers N`` (or ``AGG_WORKERS``) every child's port,
  ``AGG_METRICS_PORT + i``, must. Like ``/healthz`` this says the process is up and serving, not
  that the broker is (the worker serves its metrics while it waits for the broker). With
  ``AGG_METRICS_PORT=0`` there is nothing to ask, and PID 1 being alive is the check.

Exit status 0: healthy; 1: not (Docker's convention).
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregator.settings import Settings

# Per request; the Dockerfile's HEALTHCHECK --timeout bounds the whole check.
REQUEST_TIMEOUT_S = 2.0
# A metric only the worker's registry has: a port answering without it is not our worker.
WORKER_METRIC = b"agg_worker_events_consumed_total"


@dataclass(frozen=True)
class Probe:
    url: str
    must_contain: bytes


def module_of(command: Sequence[str]) -> str | None:
    """The module of a ``python -m MODULE ...`` command line, wherever it starts (an init such
    as ``docker-init -- python -m worker`` may come first); None for any other command."""
    for position, part in enumerate(command[:-1]):
        if part == "-m":
            return command[position + 1]
    return None


def worker_count(command: Sequence[str], settings: Settings) -> int:
    """``--workers N`` from the worker's command line, else ``AGG_WORKERS``."""
    for position, part in enumerate(command):
        if part == "--workers" and position + 1 < len(command):
            return int(command[position + 1])
        if part.startswith("--workers="):
            return int(part.removeprefix("--workers="))
    return settings.workers


def probes_for(command: Sequence[str], settings: Settings) -> list[Probe]:
    """What to ask for the process ``command`` runs; empty when it serves nothing to ask."""
    if module_of(command) != "worker":
        return [Probe(f"http://127.0.0.1:{settings.port}/healthz", b"ok")]
    if settings.metrics_port == 0:
        return []
    return [
        Probe(f"http://127.0.0.1:{settings.metrics_port + index}/metrics", WORKER_METRIC)
        for index in range(worker_count(command, settings))
    ]


def answers(probe: Probe) -> bool:
    # No proxy: an http_proxy in the container's environment must not take loopback calls.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(probe.url, timeout=REQUEST_TIMEOUT_S) as response:
            return bool(response.status == 200 and probe.must_contain in response.read())
    except OSError:
        return False


def _pid1_command() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def _pid1_alive() -> bool:
    try:
        status = Path("/proc/1/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def main() -> int:
    probes = probes_for(_pid1_command(), Settings())
    if not probes:
        return 0 if _pid1_alive() else 1
    return 0 if all(answers(probe) for probe in probes) else 1


if __name__ == "__main__":
    sys.exit(main())
