"""The report as a plain-text table or as JSON (shape documented in docs/experiments.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ingester.report.query import ExperimentInfo
from ingester.report.stats import INTERVAL_LEVEL, Analysis, VariantStats

SCHEMA_VERSION = 1
TEST_NAME = "pooled two-proportion z-test, two-sided"


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def as_dict(info: ExperimentInfo, analysis: Analysis) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment": {
            "id": str(info.id),
            "name": info.name,
            "description": info.description,
            "status": info.status,
            "is_active": info.is_active,
            "confidence_level": info.confidence_level,
            "target_sample_size": info.target_sample_size,
            "started_at": _time(info.started_at),
            "ended_at": _time(info.ended_at),
        },
        "method": {"interval": "wilson", "interval_level": INTERVAL_LEVEL, "test": TEST_NAME},
        "control": analysis.control,
        "target_sample_size_reached": analysis.target_reached,
        "variants": [
            {
                "name": v.name,
                "is_control": v.is_control,
                "exposures": v.exposures,
                "conversions": v.conversions,
                "conversion_rate": v.rate,
                "ci_low": v.ci_low,
                "ci_high": v.ci_high,
                "absolute_lift": v.absolute_lift,
                "relative_lift": v.relative_lift,
                "z": v.z,
                "p_value": v.p_value,
                "significant": v.significant,
                "revenue": float(v.revenue),
                "revenue_per_exposure": v.revenue_per_exposure,
            }
            for v in analysis.variants
        ],
    }


def render_json(info: ExperimentInfo, analysis: Analysis) -> str:
    return orjson.dumps(as_dict(info, analysis), option=orjson.OPT_INDENT_2).decode()


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


def interval(v: VariantStats) -> str:
    if v.ci_low is None or v.ci_high is None:
        return "-"
    return f"[{percent(v.ci_low)}, {percent(v.ci_high)}]"


def money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADERS = (
    "variant",
    "exposures",
    "conversions",
    "rate",
    f"{INTERVAL_LEVEL:.0%} CI",
    "abs lift",
    "rel lift",
    "p-value",
    "significant",
    "revenue/exposure",
)


def cells(v: VariantStats) -> tuple[str, ...]:
    return (
        v.name,
        str(v.exposures),
        str(v.conversions),
        percent(v.rate),
        interval(v),
        points(v.absolute_lift),
        percent(v.relative_lift, signed=True),
        p_value(v.p_value),
        yes_no(v.significant),
        money(v.revenue_per_exposure),
    )


def summary(info: ExperimentInfo, analysis: Analysis) -> list[str]:
    if analysis.target_sample_size is None:
        target = "no target sample size"
    else:
        state = "reached" if analysis.target_reached else "not reached"
        target = f"target sample size {analysis.target_sample_size} per variant: {state}"
    control = analysis.control if analysis.control is not None else "none"
    return [
        f"experiment {info.name} ({info.status}{'' if info.is_active else ', inactive'})",
        f"lift and p-values against the control variant: {control}",
        f"significance at confidence level {analysis.confidence_level:.2f}; {target}",
    ]


def render_table(info: ExperimentInfo, analysis: Analysis) -> str:
    rows = [HEADERS, *(cells(v) for v in analysis.variants)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = [*summary(info, analysis), ""]
    for row in rows:
        left = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([left, *rest]).rstrip())
    if not analysis.variants:
        lines.append("(no variants)")
    return "\n".join(lines)
