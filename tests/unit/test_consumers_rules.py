"""Pure rules of the RevenueCat, Klaviyo and Kit handlers."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.errors import PoisonError
from consumers.handlers import attributes
from consumers.handlers.environment import property_mismatch, revenuecat_mismatch
from consumers.handlers.kit_events import NO_EMAIL, KitChange, parse_kit
from consumers.handlers.klaviyo_events import Consent, parse_consent, parse_flow
from consumers.handlers.revenuecat import identifiers
from consumers.types import APPLIED, Event, Result, skipped

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def event(source: str, type_: str, data: Any) -> Event:
    return Event(source=source, id="e1", type=type_, time=T0, partition_key="k", data=data)


def attr(value: str, ms: float) -> dict[str, Any]:
    return {"value": value, "updated_at_ms": ms}


@pytest.mark.parametrize(
    ("stored", "incoming", "expected", "changed"),
    [
        pytest.param({}, {"$email": attr("a@x", 10)}, {"$email": attr("a@x", 10)}, True, id="new"),
        pytest.param(
            {"$email": attr("new@x", 20)},
            {"$email": attr("old@x", 10)},
            {"$email": attr("new@x", 20)},
            False,
            id="older value arriving later loses",
        ),
        pytest.param(
            {"$email": attr("old@x", 10)},
            {"$email": attr("new@x", 20)},
            {"$email": attr("new@x", 20)},
            True,
            id="newer wins",
        ),
        pytest.param(
            {"$email": attr("a@x", 10)},
            {"$email": attr("b@x", 10)},
            {"$email": attr("a@x", 10)},
            False,
            id="tie keeps stored",
        ),
        pytest.param(
            {"$email": attr("a@x", 10), "plan": attr("pro", 5)},
            {"$displayName": attr("Ann", 7)},
            {"$email": attr("a@x", 10), "plan": attr("pro", 5), "$displayName": attr("Ann", 7)},
            True,
            id="other keys kept",
        ),
        pytest.param(
            {"plan": attr("pro", 5), "$email": attr("a@x", 30)},
            {"plan": attr("free", 6), "$email": attr("z@x", 29)},
            {"plan": attr("free", 6), "$email": attr("a@x", 30)},
            True,
            id="per key",
        ),
        pytest.param(
            {"plan": "legacy"},
            {"plan": attr("pro", 1)},
            {"plan": attr("pro", 1)},
            True,
            id="stored entry without time loses",
        ),
        pytest.param({}, None, {}, False, id="no attributes"),
        pytest.param({}, {"x": "not an object"}, {}, False, id="malformed entry ignored"),
    ],
)
def test_attribute_merge(
    stored: dict[str, Any], incoming: Any, expected: dict[str, Any], changed: bool
) -> None:
    assert attributes.merge(stored, incoming, 0.0) == (expected, changed)


def test_attribute_without_time_takes_the_event_time() -> None:
    merged, _ = attributes.merge({}, {"x": {"value": 1}}, 1234.5)
    assert merged == {"x": {"value": 1, "updated_at_ms": 1234.5}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"a": {"value": 1}}', {"a": {"value": 1}}, id="object"),
        pytest.param("", {}, id="empty"),
        pytest.param("[1]", {}, id="not an object"),
        pytest.param("{oops", {}, id="not json"),
    ],
)
def test_parse_stored(text: str, expected: dict[str, Any]) -> None:
    assert attributes.parse_stored(text) == expected


def test_updated_at_of_missing_entry_is_minus_infinity() -> None:
    assert attributes.updated_at(None) == -math.inf


@pytest.mark.parametrize(
    ("payload", "environment", "reason"),
    [
        pytest.param({"environment": "SANDBOX"}, "production", "SANDBOX", id="sandbox in prod"),
        pytest.param({"environment": "SANDBOX"}, "dev", None, id="sandbox in dev"),
        pytest.param({"environment": "PRODUCTION"}, "dev", "PRODUCTION", id="prod in dev"),
        pytest.param({"environment": "PRODUCTION"}, "production", None, id="prod in prod"),
        pytest.param(
            {
                "environment": "PRODUCTION",
                "subscriber_attributes": {"environment": attr("dev", 1)},
            },
            "production",
            "environment attribute dev",
            id="attribute names the other environment",
        ),
        pytest.param(
            {"subscriber_attributes": {"environment": attr("production", 1)}},
            "production",
            None,
            id="attribute matches",
        ),
        pytest.param({}, "production", None, id="nothing said"),
    ],
)
def test_revenuecat_environment(
    payload: dict[str, Any], environment: str, reason: str | None
) -> None:
    found = revenuecat_mismatch(payload, environment)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("dev", None, id="same"),
        pytest.param("production", "profile environment production while dev", id="other"),
    ],
)
def test_property_mismatch(value: Any, expected: str | None) -> None:
    assert property_mismatch(value, "dev", "profile environment") == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {"app_user_id": "a", "original_app_user_id": "o", "aliases": ["o", "b", "a"]},
            ["a", "o", "b"],
            id="aliases, no repeats",
        ),
        pytest.param(
            {"transferred_from": ["x"], "transferred_to": ["y"]}, ["y", "x"], id="transfer"
        ),
        pytest.param({"app_user_id": "", "aliases": [None, 3]}, [], id="nothing usable"),
    ],
)
def test_revenuecat_identifiers(payload: dict[str, Any], expected: list[str]) -> None:
    assert identifiers(payload) == expected


def flow_body(**profile: Any) -> dict[str, Any]:
    return {"event_id": "f1", "occurred_at": "2024-01-01T00:00:00Z", "profile": profile}


def test_parse_flow_profile() -> None:
    flow = parse_flow(
        event(
            "klaviyo",
            "klaviyo.flow.profile",
            flow_body(
                id="01ABC",
                email=" Jane@Example.com ",
                external_id="u_1",
                first_name="Jane",
                phone_number=None,
                timezone="Europe/Berlin",
                properties='{"environment": "production"}',
            ),
        )
    )
    assert flow.klaviyo_id == "01ABC"
    assert flow.email == "Jane@Example.com"
    assert flow.external_id == "u_1"
    assert flow.first_name == "Jane"
    assert flow.has("phone_number") and flow.phone_number is None
    assert not flow.has("last_name")
    assert flow.timezone == "Europe/Berlin"
    assert flow.environment == "production"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"event_id": "f1"}, id="no profile"),
        pytest.param(flow_body(email="a@x"), id="no id"),
        pytest.param([1, 2], id="not an object"),
    ],
)
def test_parse_flow_rejects(data: Any) -> None:
    with pytest.raises(PoisonError):
        parse_flow(event("klaviyo", "klaviyo.flow.profile", data))


def consent_value(topic: str, profile_id: str | None = "01P") -> dict[str, Any]:
    relationships = {"profile": {"data": {"type": "profile", "id": profile_id}}}
    return {
        "external_id": "x1",
        "topic": topic,
        "payload": {"data": {"type": "event", "relationships": relationships}},
    }


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        pytest.param(
            "event:klaviyo.subscribed_to_email_marketing", Consent("01P", "email", True), id="e+"
        ),
        pytest.param(
            "event:klaviyo.unsubscribed_from_email_marketing",
            Consent("01P", "email", False),
            id="e-",
        ),
        pytest.param(
            "event:klaviyo.subscribed_to_sms_marketing", Consent("01P", "sms", True), id="s+"
        ),
        pytest.param(
            "event:klaviyo.unsubscribed_from_sms_marketing", Consent("01P", "sms", False), id="s-"
        ),
        pytest.param("event:klaviyo.opened_email", None, id="other topic"),
    ],
)
def test_parse_consent(topic: str, expected: Consent | None) -> None:
    assert parse_consent(event("klaviyo", f"klaviyo.{topic}", consent_value(topic))) == expected


def test_consent_without_profile_is_poison() -> None:
    topic = "event:klaviyo.subscribed_to_sms_marketing"
    with pytest.raises(PoisonError):
        parse_consent(event("klaviyo", f"klaviyo.{topic}", consent_value(topic, None)))


def kit_value(type_: str, **subscriber: Any) -> dict[str, Any]:
    return {"id": "k1", "type": type_, "created": "2024", "data": {"subscriber": subscriber}}


@pytest.mark.parametrize(
    ("value", "state"),
    [
        pytest.param(kit_value("subscriber.activated", state="active"), "active", id="state"),
        pytest.param(kit_value("subscriber.unsubscribed"), "cancelled", id="from type"),
        pytest.param(kit_value("subscriber.bounced", state="weird"), "bounced", id="bad state"),
        pytest.param(kit_value("subscriber.subscriber_complain"), "complained", id="legacy"),
        pytest.param(kit_value("subscriber.created", state="Inactive"), "inactive", id="case"),
        pytest.param(kit_value("subscriber.created"), None, id="says nothing"),
    ],
)
def test_kit_state(value: dict[str, Any], state: str | None) -> None:
    value["data"]["subscriber"].update(id=42, email_address=" Ann@X.io ")
    change = parse_kit(event("kit", f"kit.{value['type']}", value))
    assert change == KitChange(email="ann@x.io", subscriber_id="42", state=state)


@pytest.mark.parametrize(
    ("value", "result"),
    [
        pytest.param(kit_value("subscriber.tag_added", state="cancelled"), APPLIED, id="tag"),
        pytest.param(kit_value("subscriber.form_subscribe", state="active"), APPLIED, id="form"),
        pytest.param({"type": "tag.created", "data": {"tag": {"id": 1}}}, APPLIED, id="resource"),
        pytest.param({"type": "purchase.purchase_create", "data": {}}, APPLIED, id="purchase"),
        pytest.param({"type": "landing_page.created"}, APPLIED, id="no data"),
        pytest.param({"type": "subscriber.activated"}, skipped(NO_EMAIL), id="no subscriber"),
        pytest.param(kit_value("subscriber.activated", id=1), skipped(NO_EMAIL), id="no email"),
        pytest.param(
            kit_value("subscriber.bounced", email_address=" "), skipped(NO_EMAIL), id="blank"
        ),
        pytest.param(
            kit_value("subscriber.unsubscribed", email_address=["a@b.io"]),
            skipped(NO_EMAIL),
            id="not text",
        ),
    ],
)
def test_kit_events_that_change_nothing_we_keep(value: dict[str, Any], result: Result) -> None:
    assert parse_kit(event("kit", f"kit.{value['type']}", value)) == result
