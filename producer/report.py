"""What the user sees: a progress bar on stderr while sending, the summary on stdout at the end."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import orjson
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from producer.runner import Summary
from producer.senders import Outcome


class _EventRateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.0f} events/s" if speed else "- events/s", style="progress.data.speed"
        )


class LoadProgress:
    """A progress bar of events confirmed or failed; with ``enabled=False`` it shows nothing."""

    def __init__(self, total: int, *, description: str, console: Console, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._failed = self._retries = 0
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                _EventRateColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                speed_estimate_period=5.0,
            )
            self._task = self._progress.add_task(description, total=total, status="")

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_done(self, outcome: Outcome) -> None:
        if self._progress is None or self._task is None:
            return
        self._failed += outcome.failed
        self._retries += outcome.retries
        status = []
        if self._failed:
            status.append(f"[red]failed {self._failed:,}[/]")
        if self._retries:
            status.append(f"[yellow]retries {self._retries:,}[/]")
        self._progress.update(self._task, advance=outcome.events, status=" ".join(status))


def summary_json(summary: Summary) -> str:
    """The summary as one line of JSON (what ``--json`` prints and the benchmark parses)."""
    return orjson.dumps(summary.as_dict()).decode()


def print_summary(summary: Summary, console: Console) -> None:
    """The summary as a small table, with one line per distinct failure reason."""
    title = f"{summary.via} -> {summary.target}"
    if summary.interrupted:
        title += " (interrupted)"
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    rate = f"target {summary.rate:,.0f}/s" if summary.rate else "no rate limit"
    per = "per request" if summary.via == "http" else "per confirm window"
    rows: list[tuple[str, str, str]] = [
        ("sent", f"{summary.sent:,}", f"of {summary.count:,}"),
        ("confirmed", f"{summary.confirmed:,}", "202" if summary.via == "http" else "acked"),
        ("duplicates intended", f"{summary.duplicates_intended:,}", ""),
        ("distinct events", f"{summary.distinct:,}", f"seed {summary.seed}"),
        ("failed", f"{summary.failed:,}", ""),
        ("retries", f"{summary.retries:,}", ""),
        ("requests" if summary.via == "http" else "windows", f"{summary.requests:,}", ""),
        ("elapsed", f"{summary.elapsed_s:,.2f} s", rate),
        ("throughput", f"{summary.events_per_s:,.0f} events/s", "confirmed"),
    ]
    if summary.latency_ms is not None:
        lat = summary.latency_ms
        rows.append(
            (
                "latency p50/p99/max",
                f"{lat['p50']:,.1f} / {lat['p99']:,.1f} / {lat['max']:,.1f} ms",
                per,
            )
        )
    for name, value, note in rows:
        style = "red" if name == "failed" and summary.failed else None
        table.add_row(name, Text(value, style=style or ""), note)
    console.print(table)
    for reason, events in summary.errors.items():
        console.print(Text(f"  {events:,} event(s) failed: {reason}", style="red"))
