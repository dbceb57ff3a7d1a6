"""The participation state machine of one consumer batch (a Plan), without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from consumers.handlers.experiment_plan import Conversion, Experiment, Participation, Plan
from consumers.types import APPLIED, Result, pending, skipped

T = datetime(2024, 6, 1, tzinfo=UTC)
USER, EXP = uuid.uuid4(), uuid.uuid4()
KEY = (USER, EXP)
CONTROL, TREATMENT = uuid.uuid4(), uuid.uuid4()


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def conversion(hours: float, window: int = 30, value: str | None = None) -> Conversion:
    return Conversion(
        uuid.uuid4(), USER, EXP, h(hours), "signup", window, Decimal(value) if value else None, {}
    )


def stored(**fields: object) -> Participation:
    return Participation(USER, EXP, CONTROL, h(0), **fields)  # type: ignore[arg-type]


def test_first_impression_creates_then_increments() -> None:
    plan = Plan([])
    assert plan.impression(uuid.uuid4(), KEY, CONTROL, h(0), {}) is APPLIED
    plan.impression(uuid.uuid4(), KEY, CONTROL, h(1), {})
    (part,) = plan.touched()
    assert (part.variant_id, part.first_exposure_date, part.added_impressions) == (CONTROL, h(0), 2)
    assert [r.is_first_exposure for r in plan.impressions] == [True, False]
    assert plan.first_impression_moved == {}


def test_stored_participation_only_adds_impressions() -> None:
    plan = Plan([stored()])
    plan.impression(uuid.uuid4(), KEY, CONTROL, h(3), {})
    (part,) = plan.touched()
    assert (part.added_impressions, part.first_exposure_date) == (1, h(0))
    assert plan.impressions[0].is_first_exposure is False


def test_other_variant_is_ineligible_and_leaves_participation() -> None:
    plan = Plan([stored()])
    plan.impression(uuid.uuid4(), KEY, TREATMENT, h(1), {"user_eligibility_status": {"a": 1}})
    assert plan.touched() == []
    row = plan.impressions[0]
    assert (row.user_was_eligible, row.is_first_exposure, row.variant_id) == (
        False,
        False,
        TREATMENT,
    )
    assert row.columns["user_eligibility_status"] == {
        "a": 1,
        "reason": "assigned_to_other_variant",
        "assigned_variant_id": str(CONTROL),
    }


def test_client_marked_ineligible_impression_never_counts() -> None:
    plan = Plan([])
    plan.impression(uuid.uuid4(), KEY, CONTROL, h(0), {"user_was_eligible": False})
    assert plan.touched() == [] and plan.impressions[0].user_was_eligible is False


def test_earlier_impression_arriving_late_becomes_first() -> None:
    plan = Plan([stored()])
    early = uuid.uuid4()
    plan.impression(early, KEY, CONTROL, h(-2), {})
    (part,) = plan.touched()
    assert part.first_exposure_date == h(-2)
    assert plan.impressions[0].is_first_exposure is True
    assert plan.first_impression_moved == {KEY: early}


@pytest.mark.parametrize(
    ("hours", "window", "within"),
    [
        pytest.param(0, 30, True, id="at exposure"),
        pytest.param(24 * 30, 30, True, id="window edge"),
        pytest.param(24 * 30 + 0.001, 30, False, id="just past"),
        pytest.param(25, 1, False, id="one-day window"),
        pytest.param(0, 0, True, id="zero window, same instant"),
    ],
)
def test_conversion_window(hours: float, window: int, within: bool) -> None:
    plan = Plan([stored()])
    assert plan.conversion(conversion(hours, window)) is APPLIED
    (row,) = plan.conversions
    assert row.within_window is within
    assert row.time_to_convert == int(hours * 3600)
    assert (row.is_first_conversion, row.original_exposure_date, row.variant_id) == (
        True,
        h(0),
        CONTROL,
    )
    (part,) = plan.touched()
    assert (part.has_converted, part.conversion_within_window) == (True, within)


def test_second_conversion_is_not_first_and_window_flag_stays_on() -> None:
    plan = Plan([stored()])
    plan.conversion(conversion(1))
    plan.conversion(conversion(24 * 40))
    assert [r.is_first_conversion for r in plan.conversions] == [True, False]
    (part,) = plan.touched()
    assert (part.first_conversion_date, part.conversion_within_window) == (h(1), True)


def test_earlier_conversion_arriving_late_becomes_first() -> None:
    plan = Plan([stored(has_converted=True, first_conversion_date=h(10))])
    early = conversion(2)
    plan.conversion(early)
    assert plan.conversions[0].is_first_conversion is True
    assert plan.first_conversion_moved == {KEY: early.id}
    assert plan.touched()[0].first_conversion_date == h(2)


def test_attribution_hours_are_whole_hours() -> None:
    plan = Plan([stored()])
    plan.conversion(conversion(26.99, value="5"))
    assert plan.conversions[0].time_to_conversion_hours == 26


@pytest.mark.parametrize(
    ("parts", "hours", "result"),
    [
        pytest.param([], 1, pending("no participation"), id="no participation"),
        pytest.param([stored()], -1, pending("conversion before first exposure"), id="before"),
    ],
)
def test_conversions_that_cannot_apply(
    parts: list[Participation], hours: float, result: Result
) -> None:
    plan = Plan(parts)
    assert plan.conversion(conversion(hours)) == result
    assert plan.conversions == [] and plan.touched() == []


def experiment(**fields: object) -> Experiment:
    base: dict[str, object] = {
        "id": EXP,
        "name": "x",
        "is_active": True,
        "status": "active",
        "started_at": None,
        "ended_at": None,
    }
    return Experiment(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "result"),
    [
        pytest.param({}, None, id="running"),
        pytest.param({"status": "draft"}, None, id="draft counts"),
        pytest.param({"status": "paused"}, None, id="paused counts"),
        pytest.param({"is_active": False}, skipped("experiment inactive"), id="inactive"),
        pytest.param({"status": "completed"}, skipped("experiment ended"), id="completed"),
        pytest.param({"status": "archived"}, skipped("experiment ended"), id="archived"),
        pytest.param({"ended_at": h(0)}, skipped("experiment ended"), id="ended at event time"),
        pytest.param({"ended_at": h(1)}, None, id="ends later"),
        pytest.param({"started_at": h(1)}, skipped("experiment not started"), id="starts later"),
        pytest.param({"started_at": h(0)}, None, id="starts at event time"),
        pytest.param(
            {"status": "completed", "is_active": False, "ended_at": h(1)},
            None,
            id="completed since: the event happened while it ran",
        ),
        pytest.param(
            {"status": "completed", "ended_at": h(0)},
            skipped("experiment ended"),
            id="completed: the event came at its end",
        ),
        pytest.param(
            {"status": "completed", "started_at": h(1), "ended_at": h(2)},
            skipped("experiment not started"),
            id="completed: the event came before it started",
        ),
    ],
)
def test_experiment_refusal(fields: dict[str, object], result: Result | None) -> None:
    assert experiment(**fields).refusal(h(0)) == result


def test_earlier_impression_of_another_variant_switches_the_participation() -> None:
    plan = Plan([stored(has_converted=True, first_conversion_date=h(2))])
    early = uuid.uuid4()
    assert plan.impression(early, KEY, TREATMENT, h(-1), {}) is APPLIED
    (part,) = plan.touched()
    assert (part.variant_id, part.first_exposure_date) == (TREATMENT, h(-1))
    assert (part.has_converted, part.first_conversion_date) == (True, h(2))
    row = plan.impressions[0]
    assert (row.is_first_exposure, row.user_was_eligible) == (True, True)
    assert plan.variant_switched == {KEY: TREATMENT}
    assert plan.first_impression_moved == {KEY: early}
    assert plan.exposed_earlier() == [KEY]


def test_a_later_impression_of_the_old_variant_after_a_switch_is_ineligible() -> None:
    plan = Plan([stored()])
    plan.impression(uuid.uuid4(), KEY, TREATMENT, h(-1), {})
    plan.impression(uuid.uuid4(), KEY, CONTROL, h(3), {})
    assert plan.impressions[1].user_was_eligible is False
    assert plan.impressions[1].columns["user_eligibility_status"]["assigned_variant_id"] == str(
        TREATMENT
    )


@pytest.mark.parametrize("order", [(CONTROL, TREATMENT), (TREATMENT, CONTROL)])
def test_an_exact_tie_goes_to_the_smaller_variant_id_in_any_order(
    order: tuple[uuid.UUID, uuid.UUID],
) -> None:
    plan = Plan([])
    for variant in order:
        plan.impression(uuid.uuid4(), KEY, variant, h(0), {})
    (part,) = plan.touched()
    assert part.variant_id == min(CONTROL, TREATMENT)


def test_exposed_earlier_names_new_and_moved_participations_only() -> None:
    other = (uuid.uuid4(), EXP)
    plan = Plan([stored(), Participation(other[0], EXP, CONTROL, h(0))])
    plan.impression(uuid.uuid4(), KEY, CONTROL, h(5), {})  # later: nothing moves
    plan.impression(uuid.uuid4(), other, CONTROL, h(-1), {})  # earlier: moves
    new = (uuid.uuid4(), EXP)
    plan.impression(uuid.uuid4(), new, CONTROL, h(0), {})
    assert plan.exposed_earlier() == sorted([other, new])
