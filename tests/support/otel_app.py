"""A service shipping its Python ``logging`` records with the OpenTelemetry SDK, configured the
standard way, by ``OTEL_*`` environment variables (as the README shows):

    OTEL_SERVICE_NAME=checkout OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=http://aggregator:8080/v1/logs \
    OTEL_EXPORTER_OTLP_COMPRESSION=gzip python -m tests.support.otel_app --count 50

Run as a process of its own by the tests: the SDK keeps global state and threads, which a test
process should not inherit. Exits 0 once the provider has flushed and shut down.
"""

from __future__ import annotations

import argparse
import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.otel_app")
    parser.add_argument("--count", type=int, default=50, help="order records to log")
    args = parser.parse_args(argv)

    provider = LoggerProvider(resource=Resource.create())  # OTEL_SERVICE_NAME, ..._ATTRIBUTES
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    log = logging.getLogger("shop.checkout")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for number in range(args.count):
        log.info("order %d placed", number, extra={"order.id": number})
    log.warning("payment provider slow", extra={"latency_ms": 1234.5})
    provider.shutdown()  # flushes what is queued, waiting for the exporter's answers
    return 0


if __name__ == "__main__":
    sys.exit(main())
