"""Adjusted p-values for several treatment variants compared with one control.

- ``holm`` (default): Holm-Bonferroni step-down; controls the family-wise error rate (the
  chance of any false winner) under any dependence between the tests. Applied to
  always-valid p-values it keeps that guarantee over time;
- ``bh``: Benjamini-Hochberg step-up; controls the false discovery rate (the expected share of
  false winners among those called) for independent or positively dependent tests; more
  power, weaker promise;
- ``none``: the p-values as they are.

Each metric (conversion rate, revenue) is one family: its p-values are adjusted together.
"""

from __future__ import annotations

from collections.abc import Sequence

HOLM = "holm"
BH = "bh"
NONE = "none"
ADJUSTMENTS = (HOLM, BH, NONE)
NAMES = {HOLM: "Holm-Bonferroni", BH: "Benjamini-Hochberg", NONE: "none"}


def holm(p_values: Sequence[float]) -> list[float]:
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position  # 1-based rank in ascending order
        running = min(running, m * p_values[i] / rank)
        adjusted[i] = running
    return adjusted


def adjust(p_values: Sequence[float | None], how: str) -> list[float | None]:
    """Adjust the defined p-values together; undefined ones stay None and do not count."""
    if how not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {how!r}")
    defined = [p for p in p_values if p is not None]
    if how == HOLM:
        done = holm(defined)
    elif how == BH:
        done = benjamini_hochberg(defined)
    else:
        done = list(defined)
    values = iter(done)
    return [None if p is None else next(values) for p in p_values]
