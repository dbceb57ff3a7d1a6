"""The report as JSON (shape documented in docs/experiments.md, schema_version 2)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from ingester.report.adjust import NAMES
from ingester.report.lift import FIXED, SEQUENTIAL, Lift
from ingester.report.model import Analysis, ExperimentInfo, MetricStats, TimelinePoint
from ingester.report.srm import SRM_THRESHOLD
from ingester.report.verdict import srm_line

SCHEMA_VERSION = 2
SEQUENTIAL_NAME = "asymptotic confidence sequence (Waudby-Smith et al. 2023), always valid"
FIXED_NAME = "fixed-horizon test, valid for one look at a sample size fixed in advance"
TESTS = {
    SEQUENTIAL: ("sequential z-test, unpooled", "sequential z-test, unpooled (Welch variance)"),
    FIXED: ("two-proportion z-test, unpooled (Wald)", "Welch's t-test"),
}


def method_name(analysis: Analysis) -> str:
    return SEQUENTIAL_NAME if analysis.design.method == SEQUENTIAL else FIXED_NAME


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _lift(prefix: str, metric: MetricStats) -> dict[str, Any]:
    lift: Lift | None = metric.lift
    return {
        f"{prefix}lift": lift.estimate if lift else None,
        f"{prefix}lift_ci_low": lift.ci_low if lift else None,
        f"{prefix}lift_ci_high": lift.ci_high if lift else None,
    }


def _tests(prefix: str, metric: MetricStats) -> dict[str, Any]:
    return {
        f"{prefix}p_value": metric.lift.p_value if metric.lift else None,
        f"{prefix}p_value_adjusted": metric.p_value_adjusted,
        f"{prefix}significant": metric.significant,
    }


def _point(point: TimelinePoint) -> dict[str, Any]:
    return {
        "day": point.day.isoformat(),
        "exposures": point.exposures,
        "conversions": point.conversions,
        "revenue": float(point.revenue),
        **_lift("", MetricStats(None, None, None, point.lift)),
    }


def method(analysis: Analysis) -> dict[str, Any]:
    plan = analysis.design
    conversion_test, revenue_test = TESTS[plan.method]
    return {
        "name": method_name(analysis),
        "kind": plan.method,
        "lift": "absolute difference, variant minus control",
        "alpha": plan.alpha,
        "conversion_test": conversion_test,
        "revenue_test": revenue_test,
        "tuning_sample_size": plan.tuning_sample_size if plan.method == SEQUENTIAL else None,
        "tuning_from": "target_sample_size" if plan.tuning_from_target else "default",
        "rho": plan.rho if plan.method == SEQUENTIAL else None,
        "rate_interval": "wilson",
        "revenue_interval": "student t",
        "adjustment": analysis.adjustment,
        "adjustment_name": NAMES[analysis.adjustment],
        "winsorize_percentile": analysis.winsorize,
        "revenue_cap": _money(analysis.revenue_cap),
    }


def as_dict(info: ExperimentInfo, analysis: Analysis) -> dict[str, Any]:
    srm, planning = analysis.srm, analysis.planning
    return {
        "schema_version": SCHEMA_VERSION,
        "srm_p_value": srm.p_value,
        "srm_flagged": srm.flagged,
        "srm": {
            "statistic": srm.statistic,
            "df": srm.df,
            "threshold": SRM_THRESHOLD,
            "weights": "config" if analysis.weights_from_config else "equal",
            "message": srm_line(srm),
        },
        "winner": analysis.winner,
        "verdict": analysis.verdict,
        "experiment": {
            "id": str(info.id),
            "name": info.name,
            "description": info.description,
            "status": info.status,
            "is_active": info.is_active,
            "confidence_level": info.confidence_level,
            "minimum_detectable_effect": info.minimum_detectable_effect,
            "target_sample_size": info.target_sample_size,
            "started_at": _time(info.started_at),
            "ended_at": _time(info.ended_at),
        },
        "method": method(analysis),
        "control": analysis.control,
        "multiple_exposure_users": analysis.multiple_exposure_users,
        "target_sample_size_reached": analysis.target_reached,
        "planning": {
            "minimum_detectable_effect": planning.minimum_detectable_effect,
            "effect_kind": "relative",
            "baseline_rate": planning.baseline_rate,
            "alpha": planning.alpha,
            "power_target": planning.power_target,
            "power": planning.power,
            "power_at_target": planning.power_at_target,
            "exposures_still_needed": planning.exposures_still_needed,
            "daily_exposures": planning.daily_exposures,
            "days_left": planning.days_left,
            "days_to_target": planning.days_to_target,
        },
        "variants": [
            {
                "name": v.name,
                "is_control": v.is_control,
                "weight": v.weight,
                "exposures": v.exposures,
                "conversions": v.conversions,
                "rate": v.rate.value,
                "ci_low": v.rate.ci_low,
                "ci_high": v.rate.ci_high,
                **_lift("", v.rate),
                "relative_lift": v.relative_lift,
                **_tests("", v.rate),
                "revenue": float(v.revenue),
                "revenue_per_exposure": v.revenue_per_exposure.value,
                "revenue_ci_low": v.revenue_per_exposure.ci_low,
                "revenue_ci_high": v.revenue_per_exposure.ci_high,
                **_lift("revenue_", v.revenue_per_exposure),
                **_tests("revenue_", v.revenue_per_exposure),
                "power": v.power,
                "exposures_needed": v.exposures_needed,
            }
            for v in analysis.variants
        ],
        "timeline": {
            name: [_point(p) for p in points] for name, points in analysis.timeline.items()
        },
    }


def render_json(info: ExperimentInfo, analysis: Analysis) -> str:
    return orjson.dumps(as_dict(info, analysis), option=orjson.OPT_INDENT_2).decode()
