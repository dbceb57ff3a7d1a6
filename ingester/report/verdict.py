"""The report's one-line verdict: a winner on conversion rate, or why there is none.

The SRM check comes first: while it is flagged the assignment itself is in doubt, so no
winner is named whatever the lifts say. Otherwise the winner is the treatment with the
largest lift among those significantly better than the control (adjusted p-value below
alpha); the control wins when every treatment is significantly worse; else there is none yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from ingester.report.model import VariantStats
from ingester.report.srm import SRM_THRESHOLD, SrmResult


def p_text(value: float) -> str:
    return "< 0.0001" if value < 0.0001 else f"= {value:.4f}"


def srm_line(srm: SrmResult) -> str:
    if srm.p_value is None:
        return "sample ratio check: not enough data (needs exposures in two weighted variants)"
    if srm.flagged:
        return (
            f"SAMPLE RATIO MISMATCH: exposures do not follow the traffic weights "
            f"(chi-square p {p_text(srm.p_value)}, below {SRM_THRESHOLD})"
        )
    return f"sample ratio check: ok (chi-square p {p_text(srm.p_value)}, not below {SRM_THRESHOLD})"


def verdict(
    variants: Sequence[VariantStats], srm: SrmResult, adjustment: str
) -> tuple[str | None, str]:
    """(winner or None, the reason in one sentence)."""
    if srm.flagged:
        return None, (
            "no winner: the sample ratio mismatch means the assignment or the exposure log is "
            "broken, so no comparison can be trusted until its cause is found and fixed"
        )
    control = next((v for v in variants if v.is_control), None)
    treatments = [v for v in variants if not v.is_control]
    tested = [v for v in treatments if v.rate.lift is not None and v.rate.significant is not None]
    if control is None or not treatments:
        return None, "no winner: a comparison needs a control and at least one other variant"
    if not tested:
        return None, "no winner: not enough data to compare the variants with the control yet"
    lifts = [(v, _significant_lift(v)) for v in tested]
    better = [(lift, v.name) for v, lift in lifts if lift is not None and lift > 0]
    adjusted = "" if adjustment == "none" else f" ({adjustment}-adjusted)"
    if better:
        best = max(better)[1]
        return best, (
            f"winner: {best}, whose conversion rate is significantly higher than "
            f"{control.name}'s{adjusted}"
        )
    worse = [v for v, lift in lifts if lift is not None and lift < 0]
    if len(worse) == len(treatments):
        return control.name, (
            f"winner: {control.name}: every other variant converts significantly worse{adjusted}"
        )
    return None, (
        "no winner yet: no variant's conversion rate differs significantly from the control's"
    )


def _significant_lift(variant: VariantStats) -> float | None:
    lift = variant.rate.lift
    return lift.estimate if lift is not None and variant.rate.significant else None
