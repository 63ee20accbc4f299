"""A product figure read against a raw one: the unit every bench module's targets are stated in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """A product figure read against the raw figure measured in the same repeat."""

    label: str
    product: str
    raw: str
    target: float  # the ratio the figure should reach
    unit: str = "events/s"
    at_most: bool = False  # a cost: the ratio should stay at or below the target


Row = tuple[str, str, str]  # a figure's name, its label in the table, its unit


def ratios(values: dict[str, list[float]], comparison: Comparison) -> list[float]:
    """The product figure over the raw one, repeat by repeat (a repeat missing either: none)."""
    product, raw = values.get(comparison.product, []), values.get(comparison.raw, [])
    return [p / r for p, r in zip(product, raw, strict=False) if r]
