"""A bench module's figures as a small markdown table: each figure's min / median / max over
repeats, then each comparison's ratio, taken within one repeat, against its target."""

from __future__ import annotations

from collections.abc import Iterable

from bench.chart import spread
from bench.comparison import Comparison, Row, ratios


def markdown(
    values: dict[str, list[float]], rows: Iterable[Row], comparisons: Iterable[Comparison]
) -> str:
    lines = ["| figure | min | median | max | unit |", "|---|---:|---:|---:|---|"]
    for key, label, unit in rows:
        if values.get(key):
            low, mid, high = spread(values[key])
            cells = " | ".join(
                f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" for v in (low, mid, high)
            )
            lines.append(f"| {label} | {cells} | {unit} |")
    lines += [
        "",
        "| ratio (same repeat) | min | median | max | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for comparison in comparisons:
        shares = ratios(values, comparison)
        if shares:
            low, mid, high = spread(shares)
            met = mid <= comparison.target if comparison.at_most else mid >= comparison.target
            sign = "≤" if comparison.at_most else "≥"
            lines.append(
                f"| {comparison.label} | {low:.2f} | {mid:.2f} | {high:.2f} "
                f"| {sign} {comparison.target:.2f} | {'yes' if met else 'no'} |"
            )
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
