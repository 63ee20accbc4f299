"""The one package that speaks aiormq: consume, ack, nack, reject, and publishing without waits.

Both processes work on aio-pika's robust connection and channels (they reconnect, reopen and
restore the topology), but the per-message work happens on the aiormq channel underneath:
no ``IncomingMessage`` or ``Message`` object and no second task per message, which is most of
aio-pika's per-message cost. Everything above this module sees bytes, tags and :class:`Link`s.
"""

from aggregator.amqp.constants import (
    CALL_TIMEOUT_S,
    DELIVERY_COUNT_HEADER,
    PERSISTENT,
    PUBLISHER_HEADER,
)
from aggregator.amqp.consume import (
    Delivery,
    Frame,
    Link,
    Subscription,
    cancel,
    consume,
    send_frames,
)
from aggregator.amqp.publish import ConfirmsStalled, is_ack, publish_copy, publish_pipelined

__all__ = [
    "CALL_TIMEOUT_S",
    "DELIVERY_COUNT_HEADER",
    "PERSISTENT",
    "PUBLISHER_HEADER",
    "ConfirmsStalled",
    "Delivery",
    "Frame",
    "Link",
    "Subscription",
    "cancel",
    "consume",
    "is_ack",
    "publish_copy",
    "publish_pipelined",
    "send_frames",
]
