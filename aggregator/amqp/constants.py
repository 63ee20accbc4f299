"""Names and numbers of the wire format every module of the adapter uses."""

from __future__ import annotations

PERSISTENT = 2  # AMQP delivery mode: the broker writes the message to disk
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on a redelivery
PUBLISHER_HEADER = "x-publisher"  # the API key's name, set by the API on what it publishes
# Every call here ends: a broker that stopped answering (a half-open connection) costs at most
# this long per call, never a worker that holds its deliveries forever.
CALL_TIMEOUT_S = 10.0
