"""The API and the worker as real subprocesses (``python -m api``, ``python -m worker``).

Used where the test must kill, signal or outlive a process: crash, SIGTERM, drain, outage.
Each process's output goes to a log file in the test's directory, shown when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from aggregator.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = Path(__file__).resolve().parent / "faults"


def fault_env(**faults: str) -> dict[str, str]:
    """Environment that loads tests/support/faults into a child, with its AGG_TEST_* faults."""
    return {
        "PYTHONPATH": str(FAULTS_DIR),
        **{f"AGG_TEST_{k.upper()}": v for k, v in faults.items()},
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_")}
    env.update(settings.as_environment())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child ``python -m <module>`` with its log file; always reaped on exit."""

    def __init__(
        self,
        module: str,
        settings: Settings,
        log_path: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ):
        """``wrapper``: a command that runs the child (``ip netns exec NAME`` for a test host)."""
        self.module = module
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [*wrapper, sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env={**settings_env(settings), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind in the child."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"python -m {self.module} still running after {timeout:g}s; log:\n"
                + self.log_text()[-4000:]
            ) from None

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_worker(
    settings: Settings,
    log_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> Process:
    return Process("worker", settings, log_path, args, env, wrapper)


class ApiProcess(Process):
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.base_url = f"http://127.0.0.1:{settings.port}"
        super().__init__("api", settings, log_path)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Poll /healthz until it answers (the API serves before the broker is connected)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"the API exited early; log:\n{self.log_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet; poll again
            time.sleep(0.05)  # poll interval with a deadline
        raise AssertionError(f"the API did not answer within {timeout:g}s; log:\n{self.log_text()}")


def start_api(settings: Settings, log_path: Path) -> ApiProcess:
    """``python -m api`` on ``settings.port`` (give it a free one), healthy when returned."""
    api = ApiProcess(settings, log_path)
    try:
        api.wait_healthy()
    except BaseException:
        api.close()
        raise
    return api
