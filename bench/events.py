"""The benchmark's events: realistic ~200-byte bodies, a share of them intended duplicates."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

TOPICS = (
    "auth.login",
    "auth.logout",
    "orders.created",
    "orders.paid",
    "billing.invoice",
    "search.query",
    "svc-a.errors",
    "svc-b.requests",
)


@dataclass(frozen=True)
class Workload:
    """``bodies[i]`` is routed with ``keys[i]``; ``distinct`` identities among them."""

    keys: list[str]
    bodies: list[bytes]
    distinct: int

    @property
    def count(self) -> int:
        return len(self.bodies)


def make_workload(count: int, *, dup_rate: float = 0.0, seed: int = 7) -> Workload:
    """``count`` deliveries, of which ``round(count * dup_rate)`` repeat an earlier identity."""
    rng = random.Random(seed)
    duplicates = round(count * dup_rate)
    distinct = count - duplicates
    events = []
    for i in range(distinct):
        topic = TOPICS[i % len(TOPICS)]
        events.append(
            {
                "topic": topic,
                "event_id": f"{seed:x}-{i:08d}",
                "timestamp": "2026-11-24T10:00:00.000Z",
                "source": f"svc-{i % 5}",
                "payload": {
                    "level": "info",
                    "msg": "user action recorded",
                    "n": i,
                    "pad": "x" * 40,
                },
            }
        )
    deliveries = events + [events[rng.randrange(distinct)] for _ in range(duplicates)]
    rng.shuffle(deliveries)
    return Workload(
        keys=[str(e["topic"]) for e in deliveries],
        bodies=[orjson.dumps(e) for e in deliveries],
        distinct=distinct,
    )
