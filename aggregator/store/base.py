"""What a store is: the interface the API and the worker use, and the values it returns.

A store keeps each event once, keyed by ``(topic, event_id)``, and a 16-byte digest of every key
it ever stored (:func:`key_digest`): that is the dedup record, and it stays when retention
deletes the event, so a late replay is still a duplicate. It writes the digests and moves the
counters in the same transaction as the rows, and it speaks only the project's own
exceptions (:class:`~aggregator.errors.StoreUnavailable` when it fails for everything,
:class:`~aggregator.errors.RowRefused` when it refuses rows of their own accord), so the code
that decides what to do with a failure imports no driver.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from aggregator.events import Event

# The page of GET /events stops growing past this many payload bytes (it holds one event at
# least), so a page of large events is not built whole in memory.
PAGE_BYTES = 4 * 1024 * 1024

# Where an event stands in processing order, compared as a tuple; what a page cursor carries.
# Two numbers because a store with concurrent writers cannot order rows by one counter alone:
# PostgreSQL's is (transaction id, row number) so that no row can commit behind a reader's
# position (see aggregator/store/postgres.py); SQLite takes one writer at a time, so its row
# number alone is commit order and its positions are (0, seq).
Position = tuple[int, int]
START: Position = (0, 0)


@dataclass(frozen=True)
class EventQuery:
    """Which events a read returns, and in which order. Every filter is optional; they combine.

    ``since_us``/``until_us`` bound the event's own timestamp (microseconds since the epoch,
    :mod:`aggregator.timestamps`): ``since_us <= t < until_us``. ``text`` is ``q`` as typed, in
    the syntax of :mod:`aggregator.store.search` (parse it first: a store may raise
    SearchSyntaxError). Newest first, positions go down; otherwise up.
    """

    topic: str | None = None
    source: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    text: str | None = None
    newest_first: bool = False


EVERYTHING = EventQuery()


@dataclass(frozen=True)
class StoreResult:
    """What one batch did: the events newly stored and the ones that were duplicates."""

    stored: list[Event]
    duplicates: list[Event]


@dataclass(frozen=True)
class Stats:
    received: int
    unique_processed: int
    duplicate_dropped: int
    dead_lettered: int
    # Events stored per topic, ever (like unique_processed: retention does not take them off).
    topics: dict[str, int] = field(default_factory=dict)
    # Events deleted by retention (AGG_RETENTION); unique_processed - expired are stored now.
    expired: int = 0
    # What the store holds now: its events, and its size on disk (see each store's stats()).
    stored_events: int = 0
    store_bytes: int = 0


@dataclass(frozen=True)
class StoredEvent:
    position: Position
    topic: str
    event_id: str
    timestamp: str
    source: str
    payload_json: bytes
    processed_at: str
    # The API key that published it; None without keys, or when it came over AMQP directly.
    publisher: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = orjson.loads(self.payload_json)
        return payload


class DedupStore(Protocol):
    """The store behind the API (reads) and the worker (writes)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return when the store answers; raise ``StoreUnavailable`` saying why not."""

    async def store_events(self, events: Sequence[Event]) -> StoreResult:
        """Insert the events not stored yet and count everything, in one transaction.

        Within the batch and against the table, the first occurrence of ``(topic, event_id)``
        wins; every later one is a duplicate whatever its payload.
        """

    async def check_writable(self) -> None:
        """Write a canary event the way :meth:`store_events` would, then roll it back.

        Tells "the store refuses that row" from "the store refuses every row".
        """

    async def add_dead_lettered(self, count: int) -> None: ...

    async def stats(self) -> Stats: ...

    async def events_after(
        self,
        *,
        query: EventQuery = EVERYTHING,
        after: Position | None = None,
        limit: int,
        max_bytes: int = PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool]:
        """Up to ``limit`` events matching ``query`` past position ``after``, and if more follow.

        Past means after in processing order, or before it when ``query.newest_first``; no
        ``after`` starts at the oldest event (the newest, newest first). The page also ends once
        its payloads pass ``max_bytes`` (after one event at least). Paging on from the last
        event's ``position`` misses none and repeats none, whatever is being written meanwhile:
        an event never commits at a position a reader has already passed, either way.
        """

    async def get_event(self, topic: str, event_id: str) -> StoredEvent | None:
        """The stored event of that key; None if none is (never stored, or expired)."""

    async def delete_expired(self, before_us: int, limit: int) -> int:
        """Delete up to ``limit`` of the events whose timestamp is before ``before_us``, oldest
        first, in one short transaction, counting them in ``expired``; how many went.

        Their keys stay seen: a later delivery of one of them is a duplicate.
        """


def key_digest(topic: str, event_id: str) -> bytes:
    """The 16 bytes the store keeps of every key it ever stored, for good: what dedup checks.

    Topics cannot hold a NUL (they are AMQP routing keys of letters, digits and ``._-``), so
    ``topic NUL event_id`` names one key. 128 bits: two keys of a billion events share a digest
    with a chance of about 1 in 10^20.
    """
    text = f"{topic}\0{event_id}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


def canary_event() -> Event:
    """A throwaway event with a random id, for :meth:`DedupStore.check_writable`."""
    return Event(
        topic=".aggregator.canary",
        event_id=uuid.uuid4().hex,
        timestamp=utc_now(),
        source="aggregator",
        payload={"canary": True},
    )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
