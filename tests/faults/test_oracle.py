"""The oracle and the comparison are themselves checked: fast, no servers.

Each case builds a tiny workload by hand and says what the oracle must predict; the last
cases show that the comparison reports a lost, a doubled and a wrong row.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.faults.dbstate import compare
from tests.faults.oracle import Expected, expect
from tests.faults.workload import (
    CONSENT_TOPICS,
    EXPERIMENTS,
    Event,
    Workload,
    build,
    make_people,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PEOPLE = make_people(random.Random(7), 2, late_share=0.0)
P = PEOPLE[0]


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rc(event_id: str, seconds: int, attrs: dict[str, Any], env: str = "PRODUCTION") -> Event:
    data = {"app_user_id": P.rc_id, "environment": env, "subscriber_attributes": attrs}
    return Event("revenuecat", event_id, "rc", at(seconds), P.index, data)


def rc_purchase(event_id: str, seconds: int, price: float = 9.99) -> Event:
    event = rc(event_id, seconds, {})
    event.data.update(type="INITIAL_PURCHASE", price=price, transaction_id=f"tx-{event_id}")
    return event


def rc_refund(event_id: str, seconds: int, of: str, price: float = -9.99) -> Event:
    event = rc(event_id, seconds, {})
    event.data.update(
        type="CANCELLATION",
        cancel_reason="CUSTOMER_SUPPORT",
        price=price,
        transaction_id=f"tx-{of}",
    )
    return event


def rc_reversal(event_id: str, seconds: int, of: str) -> Event:
    event = rc(event_id, seconds, {})
    event.data.update(type="REFUND_REVERSED", price=9.99, transaction_id=f"tx-{of}")
    return event


def impression(event_id: str, seconds: int, variant: str = "control") -> Event:
    data = {"user_id": str(P.profile_id), "experiment": EXPERIMENTS[0], "variant": variant}
    return Event("app", event_id, "impression", at(seconds), P.index, data)


PART = (str(P.profile_id), EXPERIMENTS[0])


def attr(value: str, ms: int) -> dict[str, Any]:
    return {"value": value, "updated_at_ms": ms}


def flow(event_id: str, seconds: int, first: str, env: str = "production") -> Event:
    profile = {
        "id": P.klaviyo_id,
        "email": P.email,
        "phone_number": P.phone,
        "first_name": first,
        "last_name": "L",
        "timezone": "UTC",
        "properties": {"environment": env},
    }
    return Event("klaviyo", event_id, "flow", at(seconds), P.index, {"profile": profile})


def consent(event_id: str, seconds: int, topic: str) -> Event:
    rel = {"profile": {"data": {"id": P.klaviyo_id}}}
    data = {"topic": topic, "payload": {"data": {"relationships": rel}}}
    return Event("klaviyo", event_id, "consent", at(seconds), P.index, data)


def kit(event_id: str, seconds: int, kind: str) -> Event:
    data = {"type": kind, "data": {"subscriber": {"id": 5, "email_address": P.email}}}
    return Event("kit", event_id, "kit", at(seconds), P.index, data)


def predict(*events: Event) -> Expected:
    return expect(Workload(1, PEOPLE, list(events), [], []))


@pytest.mark.parametrize(
    ("events", "check"),
    [
        pytest.param(
            [rc("b", 2, {"plan": attr("new", 200)}), rc("a", 1, {"plan": attr("old", 100)})],
            lambda e: e.rc_attributes[P.rc_id]["plan"]["value"] == "new",
            id="older attribute loses whatever the order",
        ),
        pytest.param(
            [rc("a", 1, {"plan": attr("sandbox", 900)}, env="SANDBOX")],
            lambda e: e.rc_attributes[P.rc_id] == {} and ("revenuecat", "a") in e.skipped,
            id="sandbox skipped in production",
        ),
        pytest.param(
            [flow("b", 5, "New"), flow("a", 1, "Old")],
            lambda e: e.klaviyo_profiles[P.klaviyo_id][3] == "New",
            id="newest flow profile wins",
        ),
        pytest.param(
            [flow("a", 1, "Dev", env="dev")],
            lambda e: P.klaviyo_id not in e.klaviyo_profiles and ("klaviyo", "a") in e.skipped,
            id="profile for the other environment is not created",
        ),
        pytest.param(
            [consent("c", 1, CONSENT_TOPICS[1])],
            lambda e: ("klaviyo", "c") in e.pending and (P.uid, "email") not in e.settings,
            id="consent without a profile stays parked",
        ),
        pytest.param(
            [
                flow("f", 1, "X"),
                consent("b", 9, CONSENT_TOPICS[1]),
                consent("a", 3, CONSENT_TOPICS[0]),
            ],
            lambda e: e.settings[(P.uid, "email")] is False and e.stats[("email", False)] == 1,
            id="newest consent wins and is counted",
        ),
        pytest.param(
            [kit("b", 9, "subscriber.bounced"), kit("a", 3, "subscriber.activated")],
            lambda e: e.kit[P.email] == ("5", "bounced"),
            id="newest kit state wins",
        ),
        pytest.param(
            [rc_purchase("p", 1)],
            lambda e: not e.pending and not e.conversions,
            id="purchase of a buyer without participation converts nowhere, parks nothing",
        ),
        pytest.param(
            [rc_purchase("early", 1), impression("i", 5), rc_purchase("late", 3600)],
            lambda e: (
                list(e.conversions) == [f"purchase:late/{EXPERIMENTS[0]}"]
                and e.conversions[f"purchase:late/{EXPERIMENTS[0]}"][5:7] == (3595, True)
                and e.participations[PART][3:5] == (True, at(3600))
            ),
            id="a purchase converts in the participations exposed before it",
        ),
        pytest.param(
            [impression("b", 10, "green"), impression("a", 5, "control")],
            lambda e: (
                e.participations[PART][:3] == ("control", at(5), 1)
                and e.impressions["b"][4] is False
                and e.impressions["a"][4] is True
            ),
            id="the earliest impression decides the variant",
        ),
        pytest.param(
            [impression("i", 5), rc_purchase("p", 60), rc_refund("r", 90, of="p", price=-4)],
            lambda e: (
                e.conversions[f"refund:r/p/{EXPERIMENTS[0]}"][3:7]
                == ("refund", Decimal("4.00"), 85, False)
                and f"refund:r/p/{EXPERIMENTS[0]}" not in e.attributions
            ),
            id="a refund in force has a row next to the purchase's conversion",
        ),
        pytest.param(
            [
                impression("i", 5),
                rc_purchase("p", 60),
                rc_refund("r", 90, of="p"),
                rc_reversal("x", 95, of="p"),
            ],
            lambda e: [k for k in e.conversions if k.startswith("refund:")] == [],
            id="a reversed refund leaves no row",
        ),
        pytest.param(
            [],
            lambda e: e.kit[P.email] == (None, "unconfirmed"),
            id="no kit event keeps the column default",
        ),
    ],
)
def test_oracle(events: list[Event], check: Any) -> None:
    assert check(predict(*events))


def test_build_is_reproducible() -> None:
    now = time.time()
    first = build(11, users=20, events=300, now=now)
    again = build(11, users=20, events=300, now=now)
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert [r.body for r in first.requests] == [r.body for r in again.requests]


def test_event_times_are_unique() -> None:
    workload = build(3, users=30, events=600)
    times = [e.at for e in workload.events if e.kind not in ("kit-legacy", "impression")]
    assert len(times) == len(set(times))


@pytest.mark.parametrize(
    ("change", "losses", "duplicates"),
    [
        pytest.param(lambda a: a.kit.pop(P.email), 1, 0, id="lost row"),
        pytest.param(lambda a: a.impressions.update({"x": ()}), 0, 1, id="extra row"),
        pytest.param(lambda a: a.stats.update({("email", True): 2}), 0, 1, id="counted twice"),
        pytest.param(lambda a: a.kit.update({P.email: ("5", "active")}), 1, 0, id="wrong value"),
    ],
)
def test_compare_reports(change: Any, losses: int, duplicates: int) -> None:
    expected = predict(flow("f", 1, "X"), consent("c", 2, CONSENT_TOPICS[0]))
    actual = predict(flow("f", 1, "X"), consent("c", 2, CONSENT_TOPICS[0]))
    change(actual)
    found = compare(expected, actual)
    assert (found.losses, found.duplicates) == (losses, duplicates)
