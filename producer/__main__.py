"""``python -m producer``: send a realistic load of log events, over HTTP or straight over AMQP."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from datetime import UTC, datetime

import uvloop
from rich.console import Console
from rich.logging import RichHandler

from aggregator.errors import BrokerUnreachable
from aggregator.logs import configure_logging
from aggregator.settings import SettingsError, load_settings
from producer.amqp_sender import AmqpSender
from producer.cli import build_parser
from producer.http_sender import HttpSender
from producer.load import FIXED_START, LoadSpec
from producer.report import LoadProgress, print_summary, summary_json
from producer.runner import LoadRunner, Summary
from producer.senders import Sender

log = logging.getLogger("producer")


def _sender(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Sender:
    if args.via == "http":
        url = args.url or f"http://localhost:{os.environ.get('AGG_PORT') or 8080}"
        return HttpSender(
            url,
            concurrency=args.concurrency,
            retries=args.retries,
            timeout_s=args.timeout,
            token=args.token,
        )
    try:
        settings = load_settings()
    except SettingsError as exc:
        parser.error(str(exc))
    if args.amqp_url:
        settings = settings.model_copy(update={"amqp_url": args.amqp_url})
    return AmqpSender(
        settings, retries=args.retries, timeout_s=args.timeout, connect_timeout_s=args.timeout
    )


def _configure_logging(verbosity: int, stderr: Console, progress: bool) -> None:
    level = ("WARNING", "INFO", "DEBUG")[min(verbosity, 2)]
    configure_logging(level)
    if verbosity < 2:
        # aiormq logs each failed connect as an error; aggregator.amqp says it once per attempt.
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    if progress:
        # Log lines go above the progress bar instead of tearing it.
        logging.getLogger().handlers = [
            RichHandler(console=stderr, show_path=False, log_time_format="%H:%M:%S")
        ]


async def _send(runner: LoadRunner, sender: Sender, progress: LoadProgress) -> Summary:
    with progress:
        async with sender:
            try:
                return await runner.run()
            except asyncio.CancelledError:
                # Ctrl-C: stop sending, but still say what was done.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return runner.summary(interrupted=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stderr = Console(stderr=True)
    show_progress = not args.no_progress and sys.stderr.isatty()
    _configure_logging(args.verbose, stderr, show_progress)

    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    spec = LoadSpec(
        count=args.count,
        topics=args.topics,
        dup_rate=args.dup_rate,
        payload_bytes=args.payload_bytes,
        seed=seed,
        start=FIXED_START if args.seed is not None else datetime.now(UTC),
    )
    sender = _sender(args, parser)
    progress = LoadProgress(
        spec.count, description=f"{args.via} ", console=stderr, enabled=show_progress
    )
    runner = LoadRunner(
        spec,
        sender,
        batch=args.batch,
        concurrency=args.concurrency,
        rate=args.rate,
        on_done=progress.on_done,
    )
    try:
        summary = uvloop.run(_send(runner, sender, progress))
    except BrokerUnreachable as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130

    if args.json:
        sys.stdout.write(summary_json(summary) + "\n")
    else:
        print_summary(summary, Console())
    if summary.interrupted:
        return 130
    return 0 if summary.all_confirmed else 1


if __name__ == "__main__":
    sys.exit(main())
