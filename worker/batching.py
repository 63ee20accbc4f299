"""Which deliveries in hand are processed together next: a pure choice, tested without a broker.

* First deliveries (not redelivered) go in batches of up to ``AGG_BATCH_SIZE`` messages and
  ``AGG_BATCH_BYTES`` bytes, in arrival order: one transaction and one ack for many.
* Redeliveries go one at a time. A redelivery means a process died holding the message, and
  perhaps because of it; alone, a message that kills the process every time takes nothing else
  down with it. The quorum queue counts a delivery against its limit for every message in hand
  when a process dies, so a killer must not keep the same companions in hand crash after crash:
  the one with the fewest earlier deliveries goes first (the killer has the most), and among
  equals the newest first after an odd count and the oldest first after an even one. So the
  deliveries that were behind the killer in one round are ahead of it in the next, and after
  two crashes it is alone at its count; the delivery limit then dead-letters it and only it.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.amqp import Delivery


def next_batch(in_hand: Sequence[Delivery], *, max_count: int, max_bytes: int) -> list[Delivery]:
    """The deliveries to process together next (at least one, if any is in hand).

    A batch holds deliveries of one channel only: they settle together.
    """
    if not in_hand:
        return []
    link = in_hand[0].link
    in_hand = [delivery for delivery in in_hand if delivery.link == link]
    first = [delivery for delivery in in_hand if not delivery.redelivered]
    if first:
        batch: list[Delivery] = []
        size = 0
        for delivery in first:
            if batch and (len(batch) == max_count or size + len(delivery.body) > max_bytes):
                break
            batch.append(delivery)
            size += len(delivery.body)
        return batch
    fewest = min(delivery.delivery_count for delivery in in_hand)
    equals = [delivery for delivery in in_hand if delivery.delivery_count == fewest]
    return [equals[-1] if fewest % 2 else equals[0]]
