"""Publishing over HTTP under faults, with a ledger of what the API answered for each event.

For tests that break the broker or the network while a steady producer runs: every event that got
a 202 must be stored exactly once; one that got a 503 may or may not be (the client would retry,
and the dedup absorbs it); nothing else may be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.support.broker import event_body
from tests.support.processes import Process
from tests.support.waiting import eventually

TOPICS = ("auth.login", "billing.invoice", "app-log_7")

# The contract: 503 within 5 s of the broker going away, never a hang. A single request that
# takes longer than this fails the test (httpx raises), however the API spends the time.
PROMPT_S = 5.0
# The contract: /publish answers 202 again within 30 s of the broker's return.
RECOVERY_S = 30.0
# The contract: SIGTERM -> exit 0 within 10 s.
STOP_DEADLINE_S = 10.0
# Publishing a few hundred events and storing them; generous for a loaded CI machine.
STORE_TIMEOUT_S = 60.0

T = TypeVar("T")
Key = tuple[str, str]


def make_events(count: int, prefix: str) -> list[dict[str, object]]:
    """``count`` distinct events over :data:`TOPICS`; the prefix keeps phases apart."""
    run = uuid.uuid4().hex[:8]
    return [
        event_body(f"{prefix}-{run}-{i}", TOPICS[i % len(TOPICS)], payload={"n": i})
        for i in range(count)
    ]


def key_of(event: dict[str, object]) -> Key:
    return (str(event["topic"]), str(event["event_id"]))


@dataclass
class Ledger:
    """What the API answered for each event: 202 (the broker holds it) or 503 (retry)."""

    accepted: set[Key] = field(default_factory=set)
    refused: set[Key] = field(default_factory=set)


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    elapsed_s: float


async def timed_request(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    """The response and its duration; a request that takes more than PROMPT_S fails the test."""
    started = time.monotonic()
    try:
        response = await client.request(method, url, timeout=PROMPT_S, **kwargs)
    except httpx.TimeoutException:
        raise AssertionError(
            f"{method} {url} did not answer within {PROMPT_S:g}s (it must never hang)"
        ) from None
    elapsed = time.monotonic() - started
    assert elapsed <= PROMPT_S, f"{method} {url} took {elapsed:.2f}s"
    return response, elapsed


async def publish(
    client: httpx.AsyncClient, events: list[dict[str, object]], ledger: Ledger
) -> Answer:
    """POST the batch and record the outcome per event in ``ledger``; only 202 or 503 expected."""
    response, elapsed = await timed_request(client, "POST", "/publish", json=events)
    keys = {key_of(event) for event in events}
    if response.status_code == 202:
        assert response.json() == {"accepted": len(events)}, response.text
        ledger.accepted |= keys
    elif response.status_code == 503:
        ledger.refused |= keys
    else:
        raise AssertionError(f"POST /publish answered {response.status_code}: {response.text}")
    return Answer(response.status_code, response.headers.get("retry-after"), elapsed)


@dataclass(frozen=True)
class Attempt:
    sent: float
    answered: float
    answer: Answer


async def keep_publishing(
    client: httpx.AsyncClient, ledger: Ledger, attempts: list[Attempt], done: asyncio.Event
) -> None:
    """A steady producer through the outage: batches of 10 new events until ``done``."""
    while not done.is_set():
        sent = time.monotonic()
        answer = await publish(client, make_events(10, "stream"), ledger)
        attempts.append(Attempt(sent, time.monotonic(), answer))
        if answer.status == 503:
            # A client's back-off (Retry-After, scaled down), so a refusing API is not flooded;
            # it paces the producer and waits on nothing.
            await asyncio.sleep(0.05)


async def current(value: T) -> T:
    """A value already at hand, as an awaitable probe for :func:`eventually`."""
    return value


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def publish_accepted(
    client: httpx.AsyncClient, events: list[dict[str, object]], ledger: Ledger, chunk: int = 25
) -> None:
    """Publish in requests of ``chunk`` events; each must get a 202."""
    for start in range(0, len(events), chunk):
        answer = await publish(client, events[start : start + chunk], ledger)
        assert answer.status == 202, f"expected 202 with the broker up, got {answer}"


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response, _ = await timed_request(client, "GET", "/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored_keys(client: httpx.AsyncClient) -> list[Key]:
    """Every stored event's identity, paging ``/events`` to its end (duplicates kept)."""
    keys: list[Key] = []
    params: dict[str, str | int] = {"limit": 1000}
    while True:
        response, _ = await timed_request(client, "GET", "/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        keys += [(event["topic"], event["event_id"]) for event in page["events"]]
        if page["next"] is None:
            return keys
        params["after"] = page["next"]


async def readyz_status(client: httpx.AsyncClient) -> int:
    response, _ = await timed_request(client, "GET", "/readyz")
    return response.status_code


async def wait_stored(client: httpx.AsyncClient, expected: set[Key]) -> list[Key]:
    """Poll ``/events`` until every expected identity is stored; the stored identities."""

    def has_all(keys: list[Key]) -> bool:
        return expected <= set(keys)

    return await eventually(
        lambda: stored_keys(client),
        has_all,
        timeout=STORE_TIMEOUT_S,
        what=f"all {len(expected)} accepted events to be stored",
    )


async def assert_stored_exactly_once(
    client: httpx.AsyncClient, ledger: Ledger, *, may_store_refused: bool
) -> dict[str, Any]:
    """Every 202'd event stored once, nothing unknown stored, counters consistent."""
    await wait_stored(client, ledger.accepted)

    async def rows_and_counters() -> tuple[list[Key], dict[str, Any]]:
        return await stored_keys(client), await stats(client)

    # The counters commit with the rows; but events a 503 left in the queue (their outcome
    # unknown to the client) may still be arriving, so the two are read until they agree.
    keys, counters = await eventually(
        rows_and_counters,
        lambda both: both[1]["unique_processed"] == len(both[0]),
        timeout=STORE_TIMEOUT_S,
        what="the counters to match the stored rows",
    )
    twice = sorted(key for key, n in Counter(keys).items() if n > 1)
    assert not twice, f"stored more than once: {twice[:10]}"
    # A 503 leaves the outcome unknown (the contract lets the client retry and the dedup absorb
    # it), so a refused event may be stored; anything else must not be.
    allowed = ledger.accepted | ledger.refused if may_store_refused else ledger.accepted
    unknown = set(keys) - allowed
    assert not unknown, f"{len(unknown)} events stored that were never published: {unknown}"
    assert counters["received"] == counters["unique_processed"] + counters["duplicate_dropped"], (
        counters
    )
    assert counters["dead_lettered"] == 0, counters
    return counters


def assert_alive(*processes: Process) -> None:
    for process in processes:
        assert process.popen.poll() is None, (
            f"python -m {process.module} exited with {process.popen.returncode}"
        )
