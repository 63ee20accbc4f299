"""Waiting on state with a deadline: the tests' only way to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.05


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 20.0,
    what: str = "the expected state",
) -> T:
    """Poll ``probe`` until ``accept`` holds for its value; fail with the last value at the end."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; last: {value!r}")
        await asyncio.sleep(POLL_INTERVAL_S)  # poll interval, not synchronisation
