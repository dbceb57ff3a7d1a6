"""The report as plain text: the SRM check and the verdict first, then the figures."""

from __future__ import annotations

from collections.abc import Sequence

from ingester.report.adjust import NAMES
from ingester.report.lift import SEQUENTIAL, Lift
from ingester.report.model import Analysis, ExperimentInfo, VariantStats
from ingester.report.render import method_name
from ingester.report.verdict import srm_line


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.2f} pp"


def p_value(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def money(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def interval(low: float | None, high: float | None, form: str = "percent") -> str:
    if low is None or high is None:
        return "-"
    if form == "points":
        return f"[{low * 100:+.2f}, {high * 100:+.2f}] pp"
    if form == "money":
        return f"[{money(low)}, {money(high)}]"
    if form == "signed money":
        return f"[{money(low, signed=True)}, {money(high, signed=True)}]"
    return f"[{percent(low)}, {percent(high)}]"


def _lift_interval(lift: Lift | None, form: str) -> str:
    return interval(lift.ci_low, lift.ci_high, form) if lift else "-"


def conversion_headers(analysis: Analysis) -> tuple[str, ...]:
    level = f"{analysis.confidence_level:.0%}"
    kind = "CS" if analysis.design.method == SEQUENTIAL else "CI"
    return ("variant", "weight", "exposures", "conversions", "rate", f"{level} CI", "lift",
            f"lift {level} {kind}", "rel lift", "p-value", "adj p", "significant")  # fmt: skip


def conversion_cells(v: VariantStats) -> tuple[str, ...]:
    lift = v.rate.lift
    return (
        v.name,
        f"{v.weight:.2f}",
        str(v.exposures),
        str(v.conversions),
        percent(v.rate.value),
        interval(v.rate.ci_low, v.rate.ci_high),
        points(lift.estimate if lift else None),
        _lift_interval(lift, "points"),
        percent(v.relative_lift, signed=True),
        p_value(lift.p_value if lift else None),
        p_value(v.rate.p_value_adjusted),
        yes_no(v.rate.significant),
    )


def revenue_headers(analysis: Analysis) -> tuple[str, ...]:
    level = f"{analysis.confidence_level:.0%}"
    kind = "CS" if analysis.design.method == SEQUENTIAL else "CI"
    return ("variant", "net revenue", "per exposure", f"{level} CI", "lift",
            f"lift {level} {kind}", "p-value", "adj p", "significant")  # fmt: skip


def revenue_cells(v: VariantStats) -> tuple[str, ...]:
    metric = v.revenue_per_exposure
    lift = metric.lift
    return (
        v.name,
        money(float(v.revenue)),
        money(metric.value),
        interval(metric.ci_low, metric.ci_high, "money"),
        money(lift.estimate if lift else None, signed=True),
        _lift_interval(lift, "signed money"),
        p_value(lift.p_value if lift else None),
        p_value(metric.p_value_adjusted),
        yes_no(metric.significant),
    )


def headline(analysis: Analysis) -> list[str]:
    """What must be read first: the SRM check, then the verdict."""
    return [srm_line(analysis.srm), analysis.verdict]


def summary(info: ExperimentInfo, analysis: Analysis) -> list[str]:
    plan = analysis.design
    method = f"method: {method_name(analysis)}; alpha {plan.alpha:.2f}"
    if plan.method == SEQUENTIAL:
        source = "2 x target_sample_size" if plan.tuning_from_target else "default"
        method += f"; tightest at {plan.tuning_sample_size} exposures per comparison ({source})"
    winsorize = ""
    if analysis.winsorize is not None:
        cap = analysis.revenue_cap
        winsorize = (
            f"; revenue winsorised at the {analysis.winsorize:g}th percentile of buyers "
            f"({'no buyers' if cap is None else money(float(cap))})"
        )
    weights = "from config_json" if analysis.weights_from_config else "equal"
    return [
        f"experiment {info.name} ({info.status}{'' if info.is_active else ', inactive'}); "
        f"control: {analysis.control or 'none'}; traffic weights: {weights}",
        method,
        f"lifts are absolute (variant - control); p-values adjusted: "
        f"{NAMES[analysis.adjustment]}{winsorize}",
        f"users exposed to more than one variant: {analysis.multiple_exposure_users}",
    ]


def planning_lines(analysis: Analysis) -> list[str]:
    plan = analysis.planning
    if analysis.target_sample_size is None:
        target = "no target sample size"
    else:
        state = "reached" if analysis.target_reached else "not reached"
        target = f"target sample size {analysis.target_sample_size} per variant: {state}"
        if plan.days_to_target is not None and not analysis.target_reached:
            target += f", about {plan.days_to_target:.1f} days left"
    if plan.power is None:
        return [f"planning: {target}; no power figures (needs a minimum detectable effect "
                "and a control rate between 0 and 1)"]  # fmt: skip
    mde = plan.minimum_detectable_effect or 0.0
    needed = "-" if plan.exposures_still_needed is None else str(plan.exposures_still_needed)
    days = "-" if plan.days_left is None else f"{plan.days_left:.1f}"
    at_target = "" if plan.power_at_target is None else f", {plan.power_at_target:.1%} at target"
    return [
        f"planning: {target}",
        f"power to detect a {mde:.2%} relative lift from {percent(plan.baseline_rate)}: "
        f"{plan.power:.1%} now{at_target}; exposures still needed for "
        f"{plan.power_target:.0%} power: {needed}; days left at the last 7 days' rate "
        f"({plan.daily_exposures:.1f}/day): {days}",
    ]


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        left = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([left, *rest]).rstrip())
    return lines


def render_table(info: ExperimentInfo, analysis: Analysis) -> str:
    lines = [*headline(analysis), "", *summary(info, analysis), "", "conversion rate"]
    lines += _aligned([conversion_headers(analysis), *map(conversion_cells, analysis.variants)])
    lines += ["", "revenue per exposed user, net of refunds"]
    lines += _aligned([revenue_headers(analysis), *map(revenue_cells, analysis.variants)])
    if not analysis.variants:
        lines.append("(no variants)")
    return "\n".join([*lines, "", *planning_lines(analysis)])
