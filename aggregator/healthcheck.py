"""``python -m aggregator.healthcheck``: the container healthcheck for either process.

In the API's container it asks ``/healthz`` on ``AGG_PORT``; in the worker's container (whose
PID 1 is ``python -m worker``) it checks that the worker process is alive and not a zombie.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from aggregator.settings import Settings


def _pid1_command() -> list[str]:
    try:
        return Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pid1_alive() -> bool:
    try:
        status = Path("/proc/1/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def main() -> int:
    command = _pid1_command()
    if "worker" in command:
        return 0 if _pid1_alive() else 1
    port = Settings().port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
