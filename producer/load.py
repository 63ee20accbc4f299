"""The load: realistic events, a chosen share of them intended duplicates, the same for one seed.

Every event is built as an :class:`aggregator.events.Event`, so it is valid by construction and
serialised exactly as the API and the worker expect.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, NamedTuple

import orjson

from aggregator.events import Event

# The topics a load uses, busiest first; past these come per-service streams (svc-1.errors, ...).
TOPIC_CATALOG = (
    "auth.login",
    "orders.created",
    "search.query",
    "cart.updated",
    "auth.logout",
    "orders.paid",
    "payments.failed",
    "orders.shipped",
    "users.signup",
    "billing.invoice_issued",
    "inventory.low_stock",
    "email.sent",
)
_SERVICE_STREAMS = ("errors", "requests", "warnings")
_MESSAGES = {
    "auth.login": ("user signed in", "password check failed", "signed in with SSO"),
    "auth.logout": ("user signed out", "session expired"),
    "orders.created": ("order placed", "order placed with coupon"),
    "orders.paid": ("payment captured", "payment captured after 3-D Secure"),
    "orders.shipped": ("parcel handed to carrier", "split shipment sent"),
    "payments.failed": ("card declined", "issuer unavailable", "insufficient funds"),
    "search.query": ("query answered", "query answered from cache", "no results"),
    "cart.updated": ("item added", "item removed", "quantity changed"),
    "users.signup": ("account created", "account created, email unverified"),
    "billing.invoice_issued": ("invoice issued", "credit note issued"),
    "inventory.low_stock": ("stock below threshold", "stock below safety level"),
    "email.sent": ("email delivered to relay", "email deferred by relay"),
    "errors": ("upstream timeout after 3 retries", "connection reset by peer", "unhandled error"),
    "requests": ("GET /api/v1/items 200", "POST /api/v1/cart 201", "GET /api/v1/me 304"),
    "warnings": ("slow query (1.2 s)", "retrying after 429 from upstream", "pool near capacity"),
}
_LEVELS = ("info", "warning", "error")
_LEVEL_CUM_WEIGHTS = (80, 95, 100)
_FILLER = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua "
)
# `,"detail":""`: what adding the padding field costs before its text.
_PADDING_OVERHEAD = 12
MAX_PAYLOAD_BYTES = 1_000_000
# A duplicate repeats one of the most recent originals, as a client retrying a publish would.
DUPLICATE_WINDOW = 1000
# Where a seeded load's clock starts, so the same seed gives byte-identical events.
FIXED_START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def topic_names(count: int) -> list[str]:
    """``count`` distinct, realistic topic names, always the same ones for the same count."""
    if count < 1:
        raise ValueError("at least one topic is needed")
    names = list(TOPIC_CATALOG[:count])
    for extra in range(count - len(names)):
        service, stream = divmod(extra, len(_SERVICE_STREAMS))
        names.append(f"svc-{service + 1}.{_SERVICE_STREAMS[stream]}")
    return names


def planned_duplicates(count: int, dup_rate: float) -> int:
    """Sends among ``count`` that repeat an earlier event; the first send is always a new one."""
    return min(round(count * dup_rate), max(count - 1, 0))


@dataclass(frozen=True)
class LoadSpec:
    """What to generate. ``start`` is the first event's timestamp (UTC)."""

    count: int
    topics: int = 8
    dup_rate: float = 0.0
    payload_bytes: int = 0
    seed: int = 0
    start: datetime = field(default=FIXED_START)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if self.topics < 1:
            raise ValueError("topics must be at least 1")
        if not 0.0 <= self.dup_rate <= 1.0:
            raise ValueError("dup_rate must be between 0 and 1")
        if not 0 <= self.payload_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload_bytes must be between 0 and {MAX_PAYLOAD_BYTES}")
        if self.start.tzinfo is None:
            raise ValueError("start must have a timezone")

    @property
    def duplicates(self) -> int:
        return planned_duplicates(self.count, self.dup_rate)

    @property
    def distinct(self) -> int:
        return self.count - self.duplicates


def generate_events(spec: LoadSpec) -> Iterator[Event]:
    """``spec.count`` events in send order; exactly ``spec.duplicates`` repeat an earlier one.

    A repeat is the earlier event itself (same identity and body), as a retried publish is. The
    first ``spec.topics`` new events cover every topic once; later ones favour the first topics
    (a Zipf-like skew), as real traffic does.
    """
    rng = random.Random(spec.seed)
    names = topic_names(spec.topics)
    cum_weights = list(accumulate(1 / rank for rank in range(1, len(names) + 1)))
    repeat_at = set(rng.sample(range(1, spec.count), spec.duplicates))
    recent: deque[Event] = deque(maxlen=DUPLICATE_WINDOW)
    made = 0
    for position in range(spec.count):
        if position in repeat_at:
            yield recent[rng.randrange(len(recent))]
            continue
        topic = names[made] if made < len(names) else rng.choices(names, cum_weights=cum_weights)[0]
        event = _new_event(rng, made, topic, spec)
        recent.append(event)
        made += 1
        yield event


def _new_event(rng: random.Random, index: int, topic: str, spec: LoadSpec) -> Event:
    service, _, stream = topic.partition(".")
    level = (
        "error" if stream == "errors" else rng.choices(_LEVELS, cum_weights=_LEVEL_CUM_WEIGHTS)[0]
    )
    payload: dict[str, Any] = {
        "level": level,
        "message": rng.choice(_MESSAGES.get(topic) or _MESSAGES[stream]),
        "host": f"ip-10-0-{rng.randrange(4)}-{rng.randrange(2, 250)}",
        "request_id": f"{rng.getrandbits(64):016x}",
        "duration_ms": round(rng.lognormvariate(3.0, 0.9), 1),
    }
    if service in {"auth", "orders", "cart", "users", "payments"}:
        payload["user_id"] = f"u-{rng.randrange(1, 50_000)}"
    _pad(payload, spec.payload_bytes)
    # About 200 events per second of event time, a little jitter between them.
    moment = spec.start + timedelta(milliseconds=index * 5 + rng.randrange(5))
    return Event(
        topic=topic,
        event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        timestamp=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        source=f"{service}-{rng.randrange(1, 4)}",
        payload=payload,
    )


def _pad(payload: dict[str, Any], target_bytes: int) -> None:
    """Grow ``payload`` to exactly ``target_bytes`` of JSON, if it is smaller by enough."""
    missing = target_bytes - len(orjson.dumps(payload)) - _PADDING_OVERHEAD
    if missing > 0:
        repeats = missing // len(_FILLER) + 1
        payload["detail"] = (_FILLER * repeats)[:missing]


class WireEvent(NamedTuple):
    """An event ready to send: its routing key, its id and its body as the wire format says."""

    topic: str
    event_id: str
    body: bytes


def wire_events(spec: LoadSpec) -> list[WireEvent]:
    """The whole load serialised up front, so building it does not count in the send time."""
    return [WireEvent(e.topic, e.event_id, e.wire) for e in generate_events(spec)]
