"""The benchmark's chart: each product throughput beside its raw limit, median and spread."""

from __future__ import annotations

import statistics
from pathlib import Path

PAIRS = (
    ("publish /\nHTTP ingest", "raw.publish_confirmed", "product.ingest_http"),
    ("pipeline /\nworker drain", "raw.pipeline", "product.drain"),
    ("end to end", "raw.end_to_end", "product.end_to_end"),
    ("consume /\n2-worker drain", "raw.consume_batched_acks", "product.drain_2_workers"),
)


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def chart(values: dict[str, list[float]], path: Path) -> bool:
    """Draw the pairs measured into ``path``; False, and no file, when none was (``--only``)."""
    pairs = [p for p in PAIRS if p[1] in values and p[2] in values]
    if not pairs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.2), dpi=110)
    width = 0.38
    for offset, (which, color, label) in enumerate(
        ((1, "#9aa5b1", "raw limit (no product code)"), (2, "#2f6fdf", "product"))
    ):
        mids, lows, highs = [], [], []
        for pair in pairs:
            low, mid, high = spread(values[pair[which]])
            mids.append(mid)
            lows.append(mid - low)
            highs.append(high - mid)
        xs = [i + (offset - 0.5) * width for i in range(len(pairs))]
        axis.bar(xs, mids, width, yerr=[lows, highs], capsize=4, color=color, label=label)
        for x, mid in zip(xs, mids, strict=True):
            axis.annotate(
                f"{mid:,.0f}",
                (x, mid),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 3),
                textcoords="offset points",
            )
    axis.set_xticks(range(len(pairs)), [p[0] for p in pairs])
    axis.set_ylabel("events per second (median, min–max)")
    axis.set_title("Product vs the raw limit of its stack, same run, same broker")
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
