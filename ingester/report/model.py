"""The report's vocabulary: what is read from the tables, the options, and the results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from ingester.report.adjust import ADJUSTMENTS, HOLM
from ingester.report.lift import METHODS, SEQUENTIAL, Design, Lift
from ingester.report.planning import Planning
from ingester.report.revenue import RevenueSums
from ingester.report.srm import SrmResult


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """``method``: sequential | fixed; ``adjust``: holm | bh | none; ``winsorize``: the
    percentile (0-100, exclusive) at which per-user net revenue is capped, or None."""

    method: str = SEQUENTIAL
    adjust: str = HOLM
    winsorize: float | None = None


def check_options(options: ReportOptions) -> str | None:
    """What is wrong with ``options``, in one line, or None."""
    if options.method not in METHODS:
        return f"unknown method {options.method!r} (choose {', '.join(METHODS)})"
    if options.adjust not in ADJUSTMENTS:
        return f"unknown adjustment {options.adjust!r} (choose {', '.join(ADJUSTMENTS)})"
    if options.winsorize is not None and not 0 < options.winsorize < 100:
        return f"winsorize percentile {options.winsorize:g} is not between 0 and 100"
    return None


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    id: uuid.UUID
    name: str
    description: str | None
    status: str
    is_active: bool
    confidence_level: float
    target_sample_size: int | None
    started_at: datetime | None
    ended_at: datetime | None
    minimum_detectable_effect: float | None = None


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """One variant as read: ``weight`` as configured (None when absent), its participants,
    those who converted, their net revenue sums and the participants first exposed in the
    seven days before the report."""

    name: str
    created_at: datetime
    exposures: int
    conversions: int
    revenue: RevenueSums
    weight: float | None = None
    recent_exposures: int = 0


@dataclass(frozen=True, slots=True)
class DailyCounts:
    """What one UTC day added to one variant: first exposures, first conversions, and the
    net revenue of the conversions created that day."""

    day: date
    variant: str
    exposures: int
    conversions: int
    revenue: Decimal


@dataclass(frozen=True, slots=True)
class ExperimentData:
    variants: tuple[VariantCounts, ...]
    daily: tuple[DailyCounts, ...] = ()
    multiple_exposure_users: int = 0
    revenue_cap: Decimal | None = None
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class MetricStats:
    """One metric of one variant: its value (rate or revenue per exposed user) with a
    descriptive interval, and its lift over the control (None for the control itself)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    lift: Lift | None = None
    p_value_adjusted: float | None = None
    significant: bool | None = None


@dataclass(frozen=True, slots=True)
class VariantStats:
    name: str
    is_control: bool
    weight: float
    exposures: int
    conversions: int
    revenue: Decimal
    rate: MetricStats
    revenue_per_exposure: MetricStats
    relative_lift: float | None
    power: float | None = None
    exposures_needed: int | None = None


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """Cumulative figures of one variant at the end of one day, and its lift in conversion
    rate over the control with the interval of the report's method at that day."""

    day: date
    exposures: int
    conversions: int
    revenue: Decimal
    lift: Lift | None


@dataclass(frozen=True, slots=True)
class Analysis:
    control: str | None
    confidence_level: float
    design: Design
    adjustment: str
    winsorize: float | None
    revenue_cap: Decimal | None
    weights_from_config: bool
    srm: SrmResult
    multiple_exposure_users: int
    winner: str | None
    verdict: str
    target_sample_size: int | None
    target_reached: bool | None
    planning: Planning
    variants: tuple[VariantStats, ...]
    timeline: dict[str, tuple[TimelinePoint, ...]] = field(default_factory=dict)
