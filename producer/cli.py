"""The command line of ``python -m producer``: its options, their checks, its help text."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from producer.load import FIXED_START, MAX_PAYLOAD_BYTES

DESCRIPTION = """\
Send a realistic load of log events to the aggregator, over HTTP or straight over AMQP.

Events follow the aggregator's contract (built with its own Event model); a chosen share of the
sends repeats an earlier (topic, event_id), which the aggregator must count as duplicates. A
progress bar goes to stderr, the summary to stdout at the end.

Exit status: 0 when every event was confirmed (HTTP 202, or a broker confirm), 1 when any was
not, 2 for a usage error or a broker that cannot be reached, 130 when interrupted (the summary
of what was done so far is still printed).
"""

EXAMPLES = """\
examples:
  python -m producer --count 20000 --dup-rate 0.2
      20,000 events to the API on localhost:8080, 20% of them intended duplicates
  python -m producer --via amqp --count 100000 --batch 1000 --concurrency 8
      straight to the broker at AGG_AMQP_URL, exchange AGG_EXCHANGE, 1,000 per confirm window
  python -m producer --rate 500 --batch 1 --count 5000 --json
      500 single-event requests per second; the summary (with latency) as one JSON line

environment (AMQP mode): AGG_AMQP_URL (unless --amqp-url), AGG_EXCHANGE, AGG_QUEUE,
AGG_QUEUE_TYPE and the rest of the aggregator's settings, used to declare the same topology.
"""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    return parse


def _float_at_least(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("where to")
    target.add_argument(
        "--via",
        choices=("http", "amqp"),
        default="http",
        help="POST /publish to the API, or publish straight to the broker's exchange "
        "(default: %(default)s)",
    )
    target.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help="the API's base URL, for --via http (default: http://localhost:$AGG_PORT, "
        "AGG_PORT defaulting to 8080)",
    )
    target.add_argument(
        "--token",
        default=os.environ.get("AGG_API_TOKEN"),
        metavar="TOKEN",
        help="an API key, for --via http when the API has keys (default: AGG_API_TOKEN)",
    )
    target.add_argument(
        "--amqp-url",
        default=None,
        metavar="URL",
        help="the broker, for --via amqp (default: AGG_AMQP_URL, else "
        "amqp://guest:guest@localhost:5672/); the exchange is AGG_EXCHANGE's",
    )
    load = parser.add_argument_group("the load")
    load.add_argument(
        "--count",
        type=_int_at_least(1),
        default=10_000,
        metavar="N",
        help="events to send (default: %(default)s)",
    )
    load.add_argument(
        "--topics",
        type=_int_at_least(1),
        default=8,
        metavar="K",
        help="distinct topics: auth.login, orders.created, search.query, ... then svc-1.errors, "
        "svc-1.requests, ... (default: %(default)s)",
    )
    load.add_argument(
        "--dup-rate",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="fraction (0..1) of sends that repeat an earlier (topic, event_id): intended "
        "duplicates, reported in the summary; the first send is always new "
        "(default: %(default)s)",
    )
    load.add_argument(
        "--payload-bytes",
        type=_int_at_least(0),
        default=0,
        metavar="BYTES",
        help="pad each payload to this many bytes of JSON, at most "
        f"{MAX_PAYLOAD_BYTES:,} (default: 0, the natural ~135 bytes; an event is then ~280)",
    )
    load.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="SEED",
        help="make the events deterministic; their timestamps then start at "
        f"{FIXED_START:%Y-%m-%dT%H:%M:%SZ} rather than now. The same seed sends the same "
        "events again, which the aggregator counts as duplicates "
        "(default: a random seed, shown in the summary)",
    )
    pace = parser.add_argument_group("how")
    pace.add_argument(
        "--batch",
        type=_int_at_least(1),
        default=100,
        metavar="B",
        help="events per POST (a JSON array; the bare event when 1), or per AMQP confirm "
        "window (all published, then all confirms awaited) (default: %(default)s)",
    )
    pace.add_argument(
        "--concurrency",
        type=_int_at_least(1),
        default=4,
        metavar="C",
        help="requests or confirm windows in flight at once (default: %(default)s)",
    )
    pace.add_argument(
        "--rate",
        type=_float_at_least(0),
        default=0.0,
        metavar="R",
        help="target events per second, kept by absolute deadlines: the batch ending with "
        "event n goes n/R seconds after the start (default: 0, as fast as possible)",
    )
    pace.add_argument(
        "--retries",
        type=_int_at_least(0),
        default=5,
        metavar="N",
        help="retries of a batch that was not taken (HTTP 503, after its Retry-After; "
        "transport errors; AMQP nacks, lost connections, missing confirms), then its events "
        "count as failed; other HTTP errors fail at once (default: %(default)s)",
    )
    pace.add_argument(
        "--timeout",
        type=_float_at_least(0.001),
        default=30.0,
        metavar="SECONDS",
        help="longest wait for a request's answer or a window's confirms, and for the first "
        "broker connect (default: %(default)s)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (there is none anyway when stderr is not a terminal)",
    )
    output.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object on stdout instead of a table: via, target, "
        "count, sent, confirmed, failed, duplicates_intended, distinct, retries, requests, "
        "elapsed_s, events_per_s, started_at, finished_at (Unix times), latency_ms "
        "(p50, p99, max per request or window, from when it was due), errors (reason: events)",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more to stderr: -v each retry, -vv everything",
    )
    return parser
