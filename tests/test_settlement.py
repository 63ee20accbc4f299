"""The settlement decision and the batch choice, as pure functions: no broker, no clock.

The broker is modelled only as far as the decision depends on it: which deliveries on a channel
are unsettled, what ``multiple`` settles, and (for the delivery limit) which deliveries a quorum
queue counts when a process dies holding them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import aiormq
import pytest
from aiormq.abc import DeliveredMessage
from hypothesis import given
from hypothesis import strategies as st

from aggregator.amqp import Delivery, Frame, Link
from worker.batching import next_batch
from worker.settlement import Decided, Verdict, settle


@dataclass
class FakeChannel:
    """What :class:`Link` reads of a channel: its number and whether it is closed."""

    number: int
    is_closed: bool = False


def link(number: int) -> Link:
    return Link(cast(aiormq.abc.AbstractChannel, FakeChannel(number)))


def apply(frames: list[Frame], unsettled: dict[Link, set[int]]) -> dict[tuple[Link, int], str]:
    """What the broker does with the frames: each tag's fate; fails on an unknown tag."""
    fate: dict[tuple[Link, int], str] = {}
    for frame in frames:
        pending = unsettled[frame.link]
        # RabbitMQ closes the channel (PRECONDITION_FAILED) for a tag it does not hold.
        assert frame.tag in pending, f"{frame} settles a tag that is not unsettled"
        tags = {t for t in pending if t <= frame.tag} if frame.multiple else {frame.tag}
        outcome = "ack" if frame.method == "ack" else ("requeue" if frame.requeue else "drop")
        for tag in tags:
            fate[(frame.link, tag)] = outcome
        pending -= tags
    return fate


@st.composite
def in_hand(draw: st.DrawFn) -> tuple[list[Decided], list[tuple[Link, int]]]:
    links = [link(n) for n in range(draw(st.integers(1, 3)))]
    decided: list[Decided] = []
    others: list[tuple[Link, int]] = []
    for each in links:
        tags = draw(st.lists(st.integers(1, 60), min_size=1, max_size=40, unique=True))
        for tag in tags:
            role = draw(st.sampled_from(["ack", "return", "other"]))
            if role == "other":
                others.append((each, tag))
            else:
                verdict = Verdict.ACK if role == "ack" else Verdict.RETURN
                decided.append(Decided(each, tag, verdict))
    return decided, others


@given(in_hand())
def test_each_decided_delivery_gets_its_verdict_and_no_other_is_touched(
    case: tuple[list[Decided], list[tuple[Link, int]]],
) -> None:
    decided, others = case
    unsettled: dict[Link, set[int]] = {}
    for d in decided:
        unsettled.setdefault(d.link, set()).add(d.tag)
    for each, tag in others:
        unsettled.setdefault(each, set()).add(tag)

    fate = apply(settle(decided, others), unsettled)

    expected = {(d.link, d.tag): "ack" if d.verdict is Verdict.ACK else "requeue" for d in decided}
    assert fate == expected
    assert all(tag in unsettled[each] for each, tag in others)


def test_a_whole_batch_is_one_frame() -> None:
    channel = link(1)
    decided = [Decided(channel, tag, Verdict.ACK) for tag in range(1, 501)]
    frames = settle(decided, [(channel, tag) for tag in range(501, 1001)])
    assert frames == [Frame("ack", channel, 500, multiple=True)]


def test_deliveries_ahead_of_the_batch_block_the_multiple_ack() -> None:
    channel = link(1)
    decided = [Decided(channel, tag, Verdict.ACK) for tag in (3, 4, 5)]
    frames = settle(decided, [(channel, 2)])
    assert frames == [Frame("ack", channel, tag) for tag in (3, 4, 5)]


def test_nothing_is_ever_rejected() -> None:
    """``basic.reject`` counts as a failure on RabbitMQ 4.3; a return must be a nack."""
    channel = link(1)
    decided = [Decided(channel, tag, Verdict.RETURN) for tag in (1, 2, 7)]
    frames = settle(decided, [(channel, 5)])
    assert {frame.method for frame in frames} == {"nack"}
    assert all(frame.requeue for frame in frames)


# -- the batch choice ---------------------------------------------------------------------------


def delivery(tag: int, *, count: int = 0, on: Link | None = None, size: int = 10) -> Delivery:
    return Delivery(
        body=b"x" * size,
        tag=tag,
        link=on or link(1),
        exchange="logs",
        routing_key="t",
        message_id=str(tag),
        redelivered=count > 0,
        publisher=None,
        delivery_count=count,
        _message=cast(DeliveredMessage, None),
    )


def test_first_deliveries_go_in_batches_cut_by_count_and_bytes() -> None:
    channel = link(1)
    hand = [delivery(tag, on=channel, size=100) for tag in range(1, 11)]
    assert [d.tag for d in next_batch(hand, max_count=4, max_bytes=10_000)] == [1, 2, 3, 4]
    assert [d.tag for d in next_batch(hand, max_count=100, max_bytes=350)] == [1, 2, 3]
    # One delivery larger than the byte limit still goes, alone.
    big = [delivery(1, on=channel, size=5000), delivery(2, on=channel)]
    assert [d.tag for d in next_batch(big, max_count=100, max_bytes=350)] == [1]


def test_redeliveries_go_one_at_a_time_after_first_deliveries() -> None:
    channel = link(1)
    hand = [delivery(1, count=1, on=channel), delivery(2, on=channel), delivery(3, on=channel)]
    assert [d.tag for d in next_batch(hand, max_count=100, max_bytes=10_000)] == [2, 3]
    only_redelivered = [delivery(tag, count=1, on=channel) for tag in (1, 2, 3)]
    assert len(next_batch(only_redelivered, max_count=100, max_bytes=10_000)) == 1


def test_a_batch_holds_one_channel() -> None:
    first, second = link(1), link(2)
    hand = [delivery(1, on=first), delivery(2, on=second), delivery(3, on=first)]
    assert [d.tag for d in next_batch(hand, max_count=100, max_bytes=10_000)] == [1, 3]


@dataclass
class QuorumQueue:
    """A quorum queue with a delivery limit, as far as a dying consumer is concerned."""

    limit: int
    ready: list[int]  # message ids, in queue order
    counts: dict[int, int] = field(default_factory=dict)
    dead: list[int] = field(default_factory=list)

    def deliver(self, n: int) -> list[int]:
        taken, self.ready = self.ready[:n], self.ready[n:]
        return taken

    def process_died(self, held: list[int]) -> None:
        """Every message held is returned and counted; past the limit, dead-lettered."""
        back = []
        for message in sorted(held):  # returned to the head, in their original order
            self.counts[message] = self.counts.get(message, 0) + 1
            if self.counts[message] > self.limit:
                self.dead.append(message)
            else:
                back.append(message)
        self.ready = back + self.ready


def run_until_empty(queue: QuorumQueue, killer: int, prefetch: int, batch: int) -> list[int]:
    """Workers that die whenever they process ``killer``; returns what was stored."""
    stored: list[int] = []
    for _crash in range(queue.limit + 5):
        channel = link(1)
        hand = [
            delivery(m, count=queue.counts.get(m, 0), on=channel) for m in queue.deliver(prefetch)
        ]
        while hand:
            chosen = next_batch(hand, max_count=batch, max_bytes=10**9)
            if any(d.tag == killer for d in chosen):
                queue.process_died([d.tag for d in hand])
                break
            stored += [d.tag for d in chosen]
            hand = [d for d in hand if d not in chosen]
            hand += [
                delivery(m, count=queue.counts.get(m, 0), on=channel)
                for m in queue.deliver(prefetch - len(hand))
            ]
        if not queue.ready and not hand:
            return stored
    raise AssertionError(f"still not done after {queue.limit + 5} crashes: {queue}")


@pytest.mark.parametrize("limit", [2, 3, 5, 20])
@pytest.mark.parametrize(("messages", "prefetch", "batch"), [(200, 1000, 500), (3000, 100, 20)])
@pytest.mark.parametrize("where", [0.0, 0.3, 0.5, 0.99])
def test_a_message_that_kills_the_process_every_time_is_dead_lettered_alone(
    limit: int, messages: int, prefetch: int, batch: int, where: float
) -> None:
    killer = int(messages * where)
    queue = QuorumQueue(limit=limit, ready=list(range(messages)))
    stored = run_until_empty(queue, killer, prefetch, batch)
    assert queue.dead == [killer]
    assert sorted(stored) == [m for m in range(messages) if m != killer]
