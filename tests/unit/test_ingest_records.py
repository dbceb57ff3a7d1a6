"""Body -> records of every provider: exact CloudEvents headers, key and value."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from contract.records import Record
from ingest.errors import BadRequest
from ingest.providers import kit, kit_legacy, klaviyo, klaviyo_flow, revenuecat

RECEIVED = "2026-03-01T12:00:00.000Z"


def headers_of(record: Record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def expected_headers(*, id: str, source: str, type: str, time: str, key: str) -> dict[str, str]:
    return {
        "ce_specversion": "1.0",
        "ce_id": id,
        "ce_source": source,
        "ce_type": type,
        "ce_time": time,
        "ce_partitionkey": key,
        "content-type": "application/json",
        "ingest_received_at": RECEIVED,
    }


def rc_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "CDD2A1C5-0001",
        "type": "RENEWAL",
        "app_user_id": "u_rc_alias",
        "original_app_user_id": "u_rc_1",
        "aliases": ["u_rc_1", "u_rc_alias"],
        "event_timestamp_ms": 1767225600123,
        "environment": "PRODUCTION",
        "price": 4.99,
        "subscriber_attributes": {"$email": {"value": "a@b.c", "updated_at_ms": 1767225600000}},
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def test_revenuecat_record() -> None:
    event = rc_event()
    [record] = revenuecat.build_records({"api_version": "1.0", "event": event}, RECEIVED)

    assert record.stream == "revenuecat"
    assert record.key == b"u_rc_1"
    assert orjson.loads(record.value) == event
    assert headers_of(record) == expected_headers(
        id="CDD2A1C5-0001",
        source="revenuecat",
        type="revenuecat.RENEWAL",
        time="2026-01-01T00:00:00.123Z",
        key="u_rc_1",
    )


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        pytest.param({}, "u_rc_1", id="original app user id"),
        pytest.param({"original_app_user_id": None}, "u_rc_alias", id="app user id"),
        pytest.param(
            {
                "type": "TRANSFER",
                "original_app_user_id": None,
                "app_user_id": None,
                "transferred_from": ["u_rc_old"],
                "transferred_to": ["u_rc_new"],
            },
            "u_rc_old",
            id="transfer",
        ),
    ],
)
def test_revenuecat_partition_key(changes: dict[str, Any], key: str) -> None:
    [record] = revenuecat.build_records({"event": rc_event(**changes)}, RECEIVED)
    assert record.key == key.encode()


def test_revenuecat_time_falls_back_to_receive_time() -> None:
    [record] = revenuecat.build_records({"event": rc_event(event_timestamp_ms=None)}, RECEIVED)
    assert record.header("ce_time") == RECEIVED


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({}, "event: must be an object", id="no event"),
        pytest.param({"event": []}, "event: must be an object", id="event not an object"),
        pytest.param({"event": rc_event(id=None)}, "event.id: is required", id="no id"),
        pytest.param({"event": rc_event(id="")}, "event.id: is required", id="empty id"),
        pytest.param({"event": rc_event(type=None)}, "event.type: is required", id="no type"),
        pytest.param(
            {"event": rc_event(id="i" * 257)},
            "event.id: must be at most 256 characters",
            id="id too long for an index",
        ),
        pytest.param(
            {"event": rc_event(original_app_user_id=None, app_user_id=None)},
            "event.app_user_id: is required",
            id="no user",
        ),
    ],
)
def test_revenuecat_bad_bodies(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        revenuecat.build_records(body, RECEIVED)
    assert raised.value.detail.startswith(detail)


def kl_element(index: int, **changes: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "external_id": f"ext-{index}",
        "topic": "event:klaviyo.subscribed_to_email_marketing",
        "payload": {
            "data": {
                "type": "event",
                "id": f"EVT{index}",
                "attributes": {
                    "timestamp": 1767225600,
                    "datetime": "2026-01-01T01:00:00+01:00",
                    "event_properties": {},
                },
                "relationships": {
                    "profile": {"data": {"type": "profile", "id": f"PROFILE{index}"}},
                },
            }
        },
    }
    element.update(changes)
    return element


def test_klaviyo_records_one_per_element() -> None:
    elements = [kl_element(0), kl_element(1)]
    records = klaviyo.build_records({"data": elements, "meta": {}}, RECEIVED)

    assert [orjson.loads(r.value) for r in records] == elements
    assert [r.key for r in records] == [b"PROFILE0", b"PROFILE1"]
    assert headers_of(records[1]) == expected_headers(
        id="ext-1",
        source="klaviyo",
        type="klaviyo.event:klaviyo.subscribed_to_email_marketing",
        time="2026-01-01T00:00:00.000Z",
        key="PROFILE1",
    )


@pytest.mark.parametrize(
    ("attributes", "meta", "time"),
    [
        pytest.param(
            {"datetime": "2026-01-01T00:00:00+00:00"}, {}, "2026-01-01T00:00:00.000Z", id="datetime"
        ),
        pytest.param({"timestamp": 1767225601}, {}, "2026-01-01T00:00:01.000Z", id="timestamp"),
        pytest.param(
            {"datetime": "soon"},
            {"timestamp": "2026-01-02T00:00:00Z"},
            "2026-01-02T00:00:00.000Z",
            id="meta timestamp",
        ),
        pytest.param({}, {}, RECEIVED, id="receive time"),
    ],
)
def test_klaviyo_event_time(attributes: dict[str, Any], meta: dict[str, Any], time: str) -> None:
    element = kl_element(0)
    element["payload"]["data"]["attributes"] = attributes
    [record] = klaviyo.build_records({"data": [element], "meta": meta}, RECEIVED)
    assert record.header("ce_time") == time


def test_klaviyo_event_without_profile_is_keyed_by_its_id() -> None:
    element = kl_element(3, payload={}, topic="event:klaviyo.opened_email")
    [record] = klaviyo.build_records({"data": [element]}, RECEIVED)
    assert record.key == b"ext-3"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({}, "data: must be an array of 0 to 1000 items", id="no data"),
        pytest.param({"data": [1]}, "data[0]: must be an object", id="element not an object"),
        pytest.param(
            {"data": [kl_element(0), kl_element(1, external_id=None)]},
            "data[1].external_id: is required",
            id="no external id",
        ),
        pytest.param(
            {"data": [kl_element(0, topic=7)]}, "data[0].topic: is required", id="topic not text"
        ),
        pytest.param(
            {"data": [kl_element(0), kl_element(1, payload={"data": {}})]},
            "data[1].payload.data.relationships.profile.data.id: is required for a consent topic",
            id="consent without profile",
        ),
        pytest.param(
            {"data": [kl_element(0, external_id="x" * 257)]},
            "data[0].external_id: must be at most 256 characters",
            id="id too long for an index",
        ),
        pytest.param(
            {"data": [kl_element(i) for i in range(1001)]},
            "data: must be an array of 0 to 1000 items",
            id="too many",
        ),
    ],
)
def test_klaviyo_bad_bodies(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        klaviyo.build_records(body, RECEIVED)
    assert raised.value.detail.startswith(detail)


def flow_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": "flow-1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "profile": {
            "id": "01PROFILE",
            "email": "Jane@Example.com",
            "phone_number": None,
            "first_name": "Jane",
            "last_name": "Doe",
            "external_id": "user_1",
            "timezone": "Europe/Berlin",
            "properties": {"environment": "dev"},
        },
    }
    body.update(changes)
    return body


def test_klaviyo_flow_record_is_the_whole_body() -> None:
    raw = orjson.dumps(flow_body(), option=orjson.OPT_INDENT_2)
    [record] = klaviyo_flow.build_records(flow_body(), RECEIVED, raw=raw)

    assert record.stream == "klaviyo"
    assert record.value == raw
    assert record.key == b"01PROFILE"
    assert headers_of(record) == expected_headers(
        id="flow-1",
        source="klaviyo",
        type="klaviyo.flow.profile",
        time="2026-01-01T00:00:00.000Z",
        key="01PROFILE",
    )
    [again] = klaviyo_flow.build_records(flow_body(), RECEIVED)
    assert orjson.loads(again.value) == flow_body()


@pytest.mark.parametrize(
    ("occurred_at", "time"),
    [
        pytest.param("2026-01-01 00:00:00", "2026-01-01T00:00:00.000Z", id="no offset is UTC"),
        pytest.param("1767225600", "2026-01-01T00:00:00.000Z", id="epoch text"),
        pytest.param(1767225600, "2026-01-01T00:00:00.000Z", id="epoch number"),
        pytest.param("", RECEIVED, id="empty"),
        pytest.param(None, RECEIVED, id="absent"),
    ],
)
def test_klaviyo_flow_time(occurred_at: Any, time: str) -> None:
    [record] = klaviyo_flow.build_records(flow_body(occurred_at=occurred_at), RECEIVED)
    assert record.header("ce_time") == time


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(flow_body(event_id=None), "event_id: is required", id="no event id"),
        pytest.param(flow_body(profile="x"), "profile: must be an object", id="no profile"),
        pytest.param(
            flow_body(profile={"email": "a@b.c"}), "profile.id: is required", id="no profile id"
        ),
    ],
)
def test_klaviyo_flow_bad_bodies(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        klaviyo_flow.build_records(body, RECEIVED)
    assert raised.value.detail.startswith(detail)


def kit_event(index: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"kit-{index}",
        "type": "subscriber.activated",
        "created": "2026-01-01T00:00:00Z",
        "data": {
            "subscriber": {
                "id": 100 + index,
                "first_name": "Jane",
                "email_address": f"Jane{index}@Example.COM",
                "state": "active",
            }
        },
    }
    event.update(changes)
    return event


def test_kit_records_one_per_event() -> None:
    events = [kit_event(0), kit_event(1, id=12345)]
    records = kit.build_records({"delivery_id": 9, "events": events}, RECEIVED)

    assert [orjson.loads(r.value) for r in records] == events
    assert [r.key for r in records] == [b"jane0@example.com", b"jane1@example.com"]
    assert headers_of(records[1]) == expected_headers(
        id="12345",
        source="kit",
        type="kit.subscriber.activated",
        time="2026-01-01T00:00:00.000Z",
        key="jane1@example.com",
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({"events": []}, "events: must be an array of 1 to 100 items", id="empty"),
        pytest.param(
            {"events": [kit_event(i) for i in range(101)]},
            "events: must be an array of 1 to 100 items",
            id="too many",
        ),
        pytest.param({"events": [kit_event(0, id=None)]}, "events[0].id: is required", id="no id"),
        pytest.param(
            {"events": [kit_event(0, id=True)]}, "events[0].id: is required", id="boolean id"
        ),
        pytest.param(
            {"events": [kit_event(0), kit_event(1, type="")]},
            "events[1].type: is required",
            id="no type",
        ),
    ],
)
def test_kit_bad_bodies(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(BadRequest) as raised:
        kit.build_records(body, RECEIVED)
    assert raised.value.detail.startswith(detail)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        pytest.param({"subscriber": {"id": 1, "email_address": " A@B.io"}}, "a@b.io", id="email"),
        pytest.param(
            {"subscriber": {"id": 1, "email_address": "a@b.io"}, "tag": {"id": 9}},
            "a@b.io",
            id="email before the resource",
        ),
        # Case-folded as the database's email key folds: one person, one partition.
        pytest.param({"subscriber": {"email_address": " STRASSE@X.IO "}}, "strasse@x.io", id="ss"),
        pytest.param(
            {"subscriber": {"email_address": "Straße@X.IO"}}, "strasse@x.io", id="sharp s"
        ),
        pytest.param({"subscriber": {"email_address": "ΣΟΦΙΑΣ@x.io"}}, "σοφιασ@x.io", id="sigma"),
        pytest.param({"subscriber": {"email_address": "σοφιας@x.io"}}, "σοφιασ@x.io", id="final"),
        pytest.param({"tag": {"id": 12, "name": "VIP"}}, "tag:12", id="tag"),
        pytest.param({"sequence": {"id": "7"}}, "sequence:7", id="string id"),
        pytest.param({"subscriber": {"id": 42}}, "subscriber:42", id="subscriber without email"),
        pytest.param(
            {"subscriber": {"id": 42, "email_address": "x" * 300}},
            "subscriber:42",
            id="email too long for a key",
        ),
        pytest.param(
            {"note": "x", "broadcast": {"id": True}, "post": {"id": 5}}, "post:5", id="first id"
        ),
        pytest.param({"custom_field": {"id": "x" * 300}}, "kit-0", id="id too long"),
        pytest.param({}, "kit-0", id="no resource"),
        pytest.param(None, "kit-0", id="no data"),
        pytest.param([{"id": 1}], "kit-0", id="data not an object"),
    ],
)
def test_kit_partition_key(data: Any, key: str) -> None:
    [record] = kit.build_records({"events": [kit_event(0, data=data)]}, RECEIVED)
    assert record.key == key.encode()
    assert record.header("ce_partitionkey") == key


LEGACY_BODY = {
    "subscriber": {
        "id": 1,
        "first_name": "Jane",
        "email_address": "Jane@Example.com",
        "state": "active",
        "created_at": "2018-02-15T19:40:24.913Z",
        "fields": {},
    }
}


def test_kit_legacy_record() -> None:
    raw = orjson.dumps(LEGACY_BODY)
    [record] = kit_legacy.build_records(
        "subscriber.subscriber_activate", LEGACY_BODY, raw, RECEIVED
    )

    event_id = record.header("ce_id")
    assert event_id is not None and event_id.startswith("legacy-")
    assert record.key == b"jane@example.com"
    assert orjson.loads(record.value) == {
        "id": event_id,
        "type": "subscriber.subscriber_activate",
        "created": RECEIVED,
        "data": LEGACY_BODY,
        "legacy": True,
    }
    assert headers_of(record) == expected_headers(
        id=event_id,
        source="kit",
        type="kit.subscriber.subscriber_activate",
        time=RECEIVED,
        key="jane@example.com",
    )


def test_kit_legacy_id_is_stable_and_distinguishes_deliveries() -> None:
    raw = orjson.dumps(LEGACY_BODY)

    def ce_id(event_name: str, body_raw: bytes, received: str = RECEIVED) -> str | None:
        body = orjson.loads(body_raw)
        [record] = kit_legacy.build_records(event_name, body, body_raw, received)
        return record.header("ce_id")

    first = ce_id("subscriber.subscriber_activate", raw)
    assert ce_id("subscriber.subscriber_activate", raw, "2026-03-02T00:00:00.000Z") == first
    assert ce_id("subscriber.subscriber_unsubscribe", raw) != first
    changed = dict(LEGACY_BODY["subscriber"], state="cancelled")
    assert ce_id("subscriber.subscriber_activate", orjson.dumps({"subscriber": changed})) != first


PURCHASE = {"id": 8, "transaction_id": "123-abcd", "email_address": "Buyer@Example.com"}
FIELD = {"custom_field": {"id": 3, "name": "ck_field_3_plan", "key": "plan"}}


@pytest.mark.parametrize(
    ("event_name", "body", "data", "key"),
    [
        pytest.param(
            "purchase.purchase_create", PURCHASE, {"purchase": PURCHASE}, "purchase:8", id="bare"
        ),
        pytest.param("custom_field.field_created", FIELD, FIELD, "custom_field:3", id="field"),
        pytest.param("subscriber.subscriber_activate", {}, {"subscriber": {}}, None, id="empty"),
        pytest.param("subscriber.tag_add", LEGACY_BODY, LEGACY_BODY, "jane@example.com", id="tag"),
    ],
)
def test_kit_legacy_bodies_of_any_event_are_published(
    event_name: str, body: dict[str, Any], data: dict[str, Any], key: str | None
) -> None:
    [record] = kit_legacy.build_records(event_name, body, orjson.dumps(body), RECEIVED)
    event_id = record.header("ce_id")
    assert orjson.loads(record.value)["data"] == data
    assert record.header("ce_type") == f"kit.{event_name}"
    assert record.key == (key or event_id or "").encode()


def test_kit_legacy_bad_event_name() -> None:
    with pytest.raises(BadRequest) as raised:
        kit_legacy.build_records("Subscriber Activate", LEGACY_BODY, b"{}", RECEIVED)
    assert raised.value.detail.startswith("event_name:")
