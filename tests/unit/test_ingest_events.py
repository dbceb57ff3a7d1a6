"""First-party events: per-item validation against seed 002, and the records built."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.errors import BadRequest
from ingest.providers import events

RECEIVED = "2026-03-01T12:00:00.000Z"
USER = "0b5e7a52-6d1f-4c8e-9a43-2f1d7c3e9b10"


def item(index: int = 0, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{index:012d}",
        "type": "impression",
        "user_id": USER,
        "experiment": "checkout-button",
        "variant": "green",
        "occurred_at": "2026-01-01T10:00:00+02:00",
    }
    event.update(changes)
    return event


def test_records_one_per_item() -> None:
    impression = item(0, scroll_depth_percent=80, device_type="mobile", country_code="de")
    conversion = item(
        1,
        id="ABCDEF00-0000-4000-8000-000000000001",
        user_id=USER.upper(),
        type="conversion",
        conversion_type="purchase",
        conversion_value=19.99,
        metadata={"plan": "pro"},
        future_field="kept",
    )
    records = events.build_records({"events": [impression, conversion]}, RECEIVED)

    assert [orjson.loads(r.value) for r in records] == [impression, conversion]
    assert [r.stream for r in records] == ["experiments", "experiments"]
    assert [r.key for r in records] == [USER.encode(), USER.encode()]
    assert dict((k, v.decode()) for k, v in records[1].headers) == {
        "ce_specversion": "1.0",
        "ce_id": "abcdef00-0000-4000-8000-000000000001",
        "ce_source": "app",
        "ce_type": "app.conversion",
        "ce_time": "2026-01-01T08:00:00.000Z",
        "ce_partitionkey": USER,
        "content-type": "application/json",
        "ingest_received_at": RECEIVED,
    }


VALID_OPTIONALS = [
    pytest.param({"scroll_depth_percent": 0}, id="scroll 0"),
    pytest.param({"scroll_depth_percent": 100}, id="scroll 100"),
    pytest.param({"conversion_value": 0}, id="value 0"),
    pytest.param({"conversion_value": 99999999.99}, id="value max"),
    pytest.param({"country_code": "US"}, id="country"),
    pytest.param({"region": "r" * 100}, id="region 100 chars"),
    pytest.param({"screen_resolution": "1920x1080"}, id="resolution"),
    pytest.param({"connection_type": "slow-2g"}, id="connection enum"),
    pytest.param({"device_type": "wearable"}, id="device enum"),
    pytest.param({"language_code": "zh-Hant-TW"}, id="language 10 chars"),
    pytest.param({"time_zone": "America/Argentina/ComodRivadavia"}, id="time zone"),
    pytest.param({"bounce": False, "user_was_eligible": True}, id="booleans"),
    pytest.param({"utm_source": None, "metadata": None}, id="nulls are absent"),
    pytest.param({"occurred_at": "2026-01-01T10:00:00.123456789Z"}, id="nanoseconds"),
    pytest.param({"occurred_at": "2026-01-01t10:00:00z"}, id="lower t and z"),
]


@pytest.mark.parametrize("changes", VALID_OPTIONALS)
def test_valid_items(changes: dict[str, Any]) -> None:
    [record] = events.build_records({"events": [item(**changes)]}, RECEIVED)
    assert orjson.loads(record.value) == item(**changes)


INVALID = [
    pytest.param({"id": "not-a-uuid"}, "events[0].id: must be a UUID", id="id"),
    pytest.param({"id": None}, "events[0].id: is required", id="id null"),
    pytest.param({"user_id": 5}, "events[0].user_id: must be a UUID", id="user id"),
    pytest.param(
        {"type": "click"}, "events[0].type: must be one of impression, conversion", id="type"
    ),
    pytest.param({"experiment": ""}, "events[0].experiment: must not be empty", id="experiment"),
    pytest.param({"variant": 1}, "events[0].variant: must be a string", id="variant"),
    pytest.param(
        {"occurred_at": "2026-01-01T10:00:00"},
        "events[0].occurred_at: must be an RFC 3339 date-time with an offset",
        id="time without offset",
    ),
    pytest.param(
        {"occurred_at": "2026-02-30T10:00:00Z"},
        "events[0].occurred_at: must be an RFC 3339 date-time with an offset",
        id="impossible date",
    ),
    pytest.param(
        {"occurred_at": "2026-01-01 10:00:00Z"},
        "events[0].occurred_at: must be an RFC 3339 date-time with an offset",
        id="space for T",
    ),
    pytest.param(
        {"occurred_at": "0001-01-01T10:00:00Z"},
        "events[0].occurred_at: must be an RFC 3339 date-time with an offset",
        id="year 1",
    ),
    pytest.param(
        {"occurred_at": 1767225600},
        "events[0].occurred_at: must be an RFC 3339 date-time with an offset",
        id="epoch time",
    ),
    pytest.param(
        {"scroll_depth_percent": 101},
        "events[0].scroll_depth_percent: must be between 0 and 100",
        id="scroll over 100",
    ),
    pytest.param(
        {"scroll_depth_percent": -1},
        "events[0].scroll_depth_percent: must be between 0 and 100",
        id="scroll negative",
    ),
    pytest.param(
        {"scroll_depth_percent": 50.5},
        "events[0].scroll_depth_percent: must be an integer",
        id="scroll fraction",
    ),
    pytest.param(
        {"time_on_page": True}, "events[0].time_on_page: must be an integer", id="bool as int"
    ),
    pytest.param(
        {"page_load_time": 2**31},
        "events[0].page_load_time: must be between -2147483648 and 2147483647",
        id="int4 overflow",
    ),
    pytest.param(
        {"conversion_value": -0.01},
        "events[0].conversion_value: must be between 0 and 99999999.99",
        id="negative value",
    ),
    pytest.param(
        {"conversion_value": 1e8},
        "events[0].conversion_value: must be between 0 and 99999999.99",
        id="numeric(10,2) overflow",
    ),
    pytest.param(
        {"conversion_value": "9.99"},
        "events[0].conversion_value: must be a number",
        id="value as text",
    ),
    pytest.param(
        {"country_code": "USA"},
        "events[0].country_code: must be 2 letters (ISO 3166-1 alpha-2)",
        id="country 3 letters",
    ),
    pytest.param(
        {"country_code": "1A"},
        "events[0].country_code: must be 2 letters (ISO 3166-1 alpha-2)",
        id="country digit",
    ),
    pytest.param(
        {"device_type": "phone"},
        "events[0].device_type: must be one of desktop, mobile, tablet, tv, wearable, bot, other",
        id="device enum",
    ),
    pytest.param(
        {"connection_type": "6g"},
        "events[0].connection_type: must be one of wifi, cellular, ethernet, slow-2g, 2g, 3g, "
        "4g, 5g, offline, other",
        id="connection enum",
    ),
    pytest.param(
        {"city": "c" * 101}, "events[0].city: must be at most 100 characters", id="city length"
    ),
    pytest.param(
        {"screen_resolution": "x" * 21},
        "events[0].screen_resolution: must be at most 20 characters",
        id="resolution length",
    ),
    pytest.param(
        {"language_code": "l" * 11},
        "events[0].language_code: must be at most 10 characters",
        id="language length",
    ),
    pytest.param(
        {"time_zone": "t" * 51},
        "events[0].time_zone: must be at most 50 characters",
        id="time zone length",
    ),
    pytest.param(
        {"utm_campaign": "u" * 101},
        "events[0].utm_campaign: must be at most 100 characters",
        id="utm length",
    ),
    pytest.param(
        {"referrer_source": "r" * 201},
        "events[0].referrer_source: must be at most 200 characters",
        id="referrer length",
    ),
    pytest.param({"bounce": "yes"}, "events[0].bounce: must be true or false", id="bounce"),
    pytest.param({"metadata": [1]}, "events[0].metadata: must be an object", id="metadata"),
    pytest.param(
        {"page_url": "https://x/\u0000"}, "events[0]: must not contain NUL", id="NUL character"
    ),
]


@pytest.mark.parametrize(("changes", "detail"), INVALID)
def test_invalid_item_names_index_and_field(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        events.build_records({"events": [item(**changes)]}, RECEIVED)
    assert raised.value.detail.startswith(detail)


def test_one_invalid_item_rejects_the_batch_naming_its_index() -> None:
    batch = [item(i) for i in range(5)]
    batch[3]["scroll_depth_percent"] = 150
    with pytest.raises(BadRequest) as raised:
        events.build_records({"events": batch}, RECEIVED)
    assert raised.value.detail == "events[3].scroll_depth_percent: must be between 0 and 100"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({}, "events: must be an array of 1 to 500 items", id="no events"),
        pytest.param({"events": []}, "events: must be an array of 1 to 500 items", id="empty"),
        pytest.param(
            {"events": [item(i) for i in range(501)]},
            "events: must be an array of 1 to 500 items",
            id="too many",
        ),
        pytest.param({"events": ["x"]}, "events[0]: must be an object", id="not an object"),
    ],
)
def test_batch_shape(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        events.build_records(body, RECEIVED)
    assert raised.value.detail == detail


def test_500_items_are_accepted() -> None:
    assert len(events.build_records({"events": [item(i) for i in range(500)]}, RECEIVED)) == 500
