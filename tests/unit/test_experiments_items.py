"""Decoding first-party items into typed column values; bad ones are poison naming the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from consumers.errors import PoisonError
from consumers.handlers.experiment_items import parse_item
from consumers.types import Event

T = datetime(2024, 6, 1, tzinfo=UTC)
ID = str(uuid.uuid4())
USER = str(uuid.uuid4())


def event(**fields: Any) -> Event:
    data = {
        "id": ID,
        "type": "impression",
        "user_id": USER,
        "experiment": "checkout",
        "variant": "control",
        "occurred_at": "2024-06-01T00:00:00Z",
        **fields,
    }
    data = {k: v for k, v in data.items() if v is not ...}
    return Event("app", ID, f"app.{data.get('type', 'impression')}", T, USER, data)


def test_impression_keeps_only_present_optional_columns() -> None:
    item = parse_item(event(page_url="https://x", time_on_page=3.0, bounce=None, metadata={}))
    assert (item.kind, item.id, item.user_id, item.at) == (
        "impression",
        uuid.UUID(ID),
        uuid.UUID(USER),
        T,
    )
    assert item.columns == {"page_url": "https://x", "time_on_page": 3, "metadata": {}}


@pytest.mark.parametrize(
    ("fields", "conversion_type", "window", "value"),
    [
        pytest.param({}, "conversion", 30, None, id="defaults"),
        pytest.param(
            {"conversion_type": "signup", "conversion_window_days": 7, "conversion_value": 12.345},
            "signup",
            7,
            Decimal("12.35"),
            id="given, value rounded to cents",
        ),
        pytest.param({"conversion_value": 0}, "conversion", 30, Decimal("0.00"), id="zero"),
    ],
)
def test_conversion_fields(
    fields: dict[str, Any], conversion_type: str, window: int, value: Decimal | None
) -> None:
    item = parse_item(event(type="conversion", **fields))
    assert (item.kind, item.conversion_type, item.window_days) == (
        "conversion",
        conversion_type,
        window,
    )
    assert item.column("conversion_value") == value


def test_type_falls_back_to_the_cloudevent_type() -> None:
    item = parse_item(event(type=...))
    assert item.kind == "impression"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"type": "click"}, "type", id="unknown type"),
        pytest.param({"id": "not-a-uuid"}, "id", id="bad id"),
        pytest.param({"user_id": None}, "user_id", id="missing user"),
        pytest.param({"experiment": " "}, "experiment", id="blank experiment"),
        pytest.param({"variant": 3}, "variant", id="variant not text"),
        pytest.param({"country_code": "DEU"}, "country_code", id="country too long"),
        pytest.param({"device_type": "phone"}, "device_type", id="unknown device"),
        pytest.param({"connection_type": "6g"}, "connection_type", id="unknown connection"),
        pytest.param({"scroll_depth_percent": 101}, "scroll_depth_percent", id="scroll > 100"),
        pytest.param({"time_on_page": 2**31}, "time_on_page", id="int4 overflow"),
        pytest.param({"time_on_page": True}, "time_on_page", id="bool is not int"),
        pytest.param({"bounce": "yes"}, "bounce", id="bounce not bool"),
        pytest.param({"utm_source": "x" * 101}, "utm_source", id="utm too long"),
        pytest.param(
            {"type": "conversion", "conversion_value": -1}, "conversion_value", id="negative value"
        ),
        pytest.param(
            {"type": "conversion", "conversion_value": 1e9}, "conversion_value", id="value overflow"
        ),
        pytest.param(
            {"type": "conversion", "conversion_window_days": -1},
            "conversion_window_days",
            id="negative window",
        ),
        pytest.param(
            {"type": "conversion", "conversion_type": ""}, "conversion_type", id="blank conv type"
        ),
    ],
)
def test_invalid_items_are_poison_naming_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(PoisonError, match=f"field {field} ") as raised:
        parse_item(event(**fields))
    assert raised.value.event_id == ID


def test_value_that_is_not_an_object_is_poison() -> None:
    with pytest.raises(PoisonError, match="not a JSON object"):
        parse_item(Event("app", ID, "app.impression", T, USER, ["x"]))
