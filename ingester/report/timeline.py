"""The experiment day by day: cumulative exposures, conversions and net revenue per variant,
and each treatment's lift in conversion rate with the interval of the report's method as it
stood at the end of each UTC day. With the sequential method this is the confidence sequence:
every one of its daily intervals holds the true lift at once, with the stated confidence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal

from ingester.report.lift import Design, compare, proportion
from ingester.report.model import DailyCounts, TimelinePoint

MAX_DAYS = 1000  # a longer experiment is charted over its last MAX_DAYS days


def _days(daily: Sequence[DailyCounts]) -> list[date]:
    if not daily:
        return []
    first = min(d.day for d in daily)
    last = max(d.day for d in daily)
    span = (last - first).days + 1
    return [last - timedelta(days=offset) for offset in reversed(range(min(span, MAX_DAYS)))]


def timeline(
    daily: Sequence[DailyCounts], variants: Sequence[str], control: str | None, plan: Design
) -> dict[str, tuple[TimelinePoint, ...]]:
    """One point per day from the first day with an event to the last, per variant."""
    days = _days(daily)
    if not days:
        return {}
    added: dict[tuple[str, date], DailyCounts] = {(d.variant, d.day): d for d in daily}
    exposures = dict.fromkeys(variants, 0)
    conversions = dict.fromkeys(variants, 0)
    revenue = dict.fromkeys(variants, Decimal(0))

    def add(step: DailyCounts) -> None:
        exposures[step.variant] += step.exposures
        conversions[step.variant] += step.conversions
        revenue[step.variant] += step.revenue

    for step in daily:  # what happened before the charted window still counts
        if step.day < days[0] and step.variant in exposures:
            add(step)
    series: dict[str, list[TimelinePoint]] = {name: [] for name in variants}
    for day in days:
        for name in variants:
            if (name, day) in added:
                add(added[(name, day)])
        for name in variants:
            lift = None
            if control is not None and name != control and control in exposures:
                lift = compare(
                    proportion(conversions[name], exposures[name]),
                    proportion(conversions[control], exposures[control]),
                    plan,
                )
            series[name].append(
                TimelinePoint(day, exposures[name], conversions[name], revenue[name], lift)
            )
    return {name: tuple(points) for name, points in series.items()}
