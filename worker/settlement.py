"""The settlement decision, as data: from what became of a batch to the frames that say so.

The acknowledgement policy, in one place:

* A delivery is acked only once its event row (or its duplicate count) is committed, or, for
  poison, once the dead-letter exchange confirmed the copy and ``dead_lettered`` is committed.
* A delivery the worker gives back without a verdict (it is stopping while the store is down, or
  the dead-letter copy was not confirmed) is returned with ``basic.nack`` and requeue: a return,
  not a failure. RabbitMQ 4.3 and later do not count it towards the quorum queue's delivery
  limit; 3.x counts every return. Nothing here ever uses ``basic.reject``, which 4.3 counts as a
  failure: the delivery limit is left to what kills the process.
* ``multiple=True`` on tag T settles every unsettled delivery on that channel up to T. It is used
  only where each of those is in the set being settled that way, which :func:`settle` checks
  against ``others``: every other unsettled delivery on the channel. The consumer guarantees that
  every unsettled delivery is in its hands (in a batch or waiting), so ``others`` is complete.

:func:`settle` is pure: no broker, no clock. The consumer only carries out what it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aggregator.amqp import Frame, Link


class Verdict(enum.Enum):
    ACK = "ack"  # stored, a duplicate, or poison whose copy is confirmed and counted
    RETURN = "return"  # given back to the queue with no verdict (nack, requeue)


@dataclass(frozen=True)
class Decided:
    link: Link
    tag: int
    verdict: Verdict


def settle(decided: Sequence[Decided], others: Iterable[tuple[Link, int]]) -> list[Frame]:
    """The frames that give each decided delivery its verdict and touch no other delivery.

    Per channel: returns first, then acks; each as one ``multiple`` frame for the tags below
    every delivery that must not be touched, and one frame per tag above that.
    """
    untouchable: dict[Link, list[int]] = {}
    for link, tag in others:
        untouchable.setdefault(link, []).append(tag)
    frames: list[Frame] = []
    for link in dict.fromkeys(d.link for d in decided):
        acks = sorted(d.tag for d in decided if d.link == link and d.verdict is Verdict.ACK)
        returns = sorted(d.tag for d in decided if d.link == link and d.verdict is Verdict.RETURN)
        blocking = untouchable.get(link, [])
        frames += _frames("nack", link, returns, [*acks, *blocking], requeue=True)
        # The returns are settled by now, so only the others block the acks.
        frames += _frames("ack", link, acks, blocking, requeue=False)
    return frames


def _frames(
    method: str, link: Link, tags: list[int], blocking: list[int], *, requeue: bool
) -> list[Frame]:
    if not tags:
        return []
    floor = min(blocking, default=None)
    below = [tag for tag in tags if floor is None or tag < floor]
    above = tags[len(below) :]
    frames: list[Frame] = []
    if below:
        frames.append(_frame(method, link, below[-1], multiple=len(below) > 1, requeue=requeue))
    frames += [_frame(method, link, tag, multiple=False, requeue=requeue) for tag in above]
    return frames


def _frame(method: str, link: Link, tag: int, *, multiple: bool, requeue: bool) -> Frame:
    if method == "ack":
        return Frame("ack", link, tag, multiple=multiple)
    return Frame("nack", link, tag, multiple=multiple, requeue=requeue)
