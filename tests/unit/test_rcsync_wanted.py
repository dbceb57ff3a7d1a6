"""What rc-sync wants RevenueCat to hold, and what it sends to get there (rcsync.wanted)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.types import Event
from rcsync.model import Customer, Ours, Target
from rcsync.wanted import changes, display_name, targets, wanted

NOW_MS = 1_800_000_000_000


def entry(value: str, at: float = 1_700_000_000_000) -> dict[str, Any]:
    return {"value": value, "updated_at_ms": at}


@pytest.mark.parametrize(
    ("ours", "name"),
    [
        pytest.param(Ours("a@x.io", "Ada", "Lovelace", "Augusta"), "Ada Lovelace", id="klaviyo"),
        pytest.param(Ours("a@x.io", " Ada ", None, "Augusta"), "Ada", id="klaviyo first only"),
        pytest.param(Ours("a@x.io", None, "Lovelace"), "Lovelace", id="klaviyo last only"),
        pytest.param(Ours("a@x.io", " ", "", "Augusta"), "Augusta", id="blank klaviyo: profile"),
        pytest.param(Ours("a@x.io", None, None, None), None, id="no name anywhere"),
    ],
)
def test_display_name(ours: Ours, name: str | None) -> None:
    assert display_name(ours) == name


def test_wanted_leaves_out_what_we_do_not_have() -> None:
    assert wanted(Ours(" a@x.io "), "dev") == {"$email": "a@x.io", "environment": "dev"}
    assert wanted(Ours(""), "production") == {"environment": "production"}


def customer(stored: dict[str, Any], **kw: Any) -> Customer:
    ours = kw.pop("ours", Ours("new@x.io", "Ada", "Lovelace"))
    return Customer("u_rc_1", stored, ours, **kw)


SAME = {
    "$email": entry("new@x.io"),
    "$displayName": entry("Ada Lovelace"),
    "environment": entry("dev"),
}


@pytest.mark.parametrize(
    ("stored", "reported", "refused", "sent"),
    [
        pytest.param(SAME, {}, {}, {}, id="all equal: nothing"),
        pytest.param(
            {**SAME, "$email": entry("old@x.io")}, {}, {}, {"$email": "new@x.io"}, id="email"
        ),
        pytest.param(
            {},
            {},
            {},
            {"$email": "new@x.io", "$displayName": "Ada Lovelace", "environment": "dev"},
            id="nothing known: all three",
        ),
        pytest.param(
            SAME,
            {"$email": entry("app@x.io", 1_750_000_000_000)},
            {},
            {"$email": "new@x.io"},
            id="the event reports a newer value",
        ),
        pytest.param(
            {**SAME, "$email": entry("old@x.io", 1_750_000_000_000)},
            {"$email": entry("new@x.io", 1_760_000_000_000)},
            {},
            {},
            id="the event reports ours",
        ),
        pytest.param(
            {**SAME, "$email": entry("old@x.io")},
            {},
            {"$email": "new@x.io"},
            {},
            id="refused before: never again",
        ),
        pytest.param(
            {**SAME, "$email": entry("old@x.io")},
            {},
            {"$email": "older@x.io"},
            {"$email": "new@x.io"},
            id="refused another value",
        ),
        pytest.param(
            {**SAME, "environment": entry("production"), "$email": entry("old@x.io")},
            {},
            {},
            {},
            id="another deployment's customer",
        ),
        pytest.param(
            {**SAME, "custom": entry("kept")}, {}, {}, {}, id="other attributes are not ours"
        ),
    ],
)
def test_changes(
    stored: dict[str, Any], reported: dict[str, Any], refused: dict[str, str], sent: dict[str, str]
) -> None:
    body = changes(customer(stored, refused=refused), "dev", NOW_MS, reported, NOW_MS)

    assert {k: v["value"] for k, v in body.items()} == sent
    assert all(v["updated_at_ms"] == NOW_MS for v in body.values())


def test_a_change_is_stamped_later_than_what_it_replaces() -> None:
    future = NOW_MS + 5_000.5  # a client clock ahead of ours
    body = changes(customer({"$email": entry("old@x.io", future)}), "dev", NOW_MS)

    assert body["$email"] == {"value": "new@x.io", "updated_at_ms": NOW_MS + 5_001}


def event(payload: dict[str, Any], ms: int = NOW_MS) -> Event:
    time = datetime.fromtimestamp(ms / 1000, UTC)
    return Event("revenuecat", "e", "revenuecat.TEST", time, "k", payload)


def test_targets_one_per_customer_first_known_id_merged() -> None:
    events = [
        event({"app_user_id": "anon", "original_app_user_id": "u_rc_1", "aliases": ["u_rc_2"],
               "subscriber_attributes": {"$email": entry("a@x.io", 1)}}),
        event({"app_user_id": "u_rc_1", "subscriber_attributes": {"$email": entry("b@x.io", 2)}}),
        event({"app_user_id": "stranger"}),
        event({"app_user_id": "u_rc_3", "environment": "PRODUCTION"}),
        event(["not", "an", "object"]),  # type: ignore[arg-type]
    ]  # fmt: skip

    found = targets(events, {"u_rc_1", "u_rc_2", "u_rc_3"}, "dev")

    assert found == [
        Target("u_rc_1", {"$email": entry("b@x.io", 2)}, NOW_MS, also=("u_rc_2",)),
    ]
