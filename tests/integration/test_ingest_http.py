"""Every endpoint over real HTTP against the real broker: the exact records on the topic."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from contract import tracecontext
from contract.topics import topic_name
from core.settings import Settings
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h
from tests.support import read_records


@pytest.fixture
def settings(stack: SessionStack, topic_prefix: str) -> Settings:
    """The test settings without a database: ingest never touches one."""
    return make_settings(None, stack.bootstrap, topic_prefix)


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[str]:
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as created:
        yield created


async def records_of(settings: Settings, stream: str, count: int) -> list[Any]:
    return await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, stream), count
    )


def assert_cloudevent(
    record: Any, *, id: str, source: str, type: str, time: str, key: str, since: float
) -> None:
    headers = h.headers_of(record)
    received = datetime.fromisoformat(headers.pop("ingest_received_at")).timestamp()
    assert since - 1 <= received <= datetime.now().timestamp() + 1
    # A request without a traceparent starts a trace; its records carry it (docs/contract.md §5).
    assert tracecontext.parse(headers.pop("traceparent")) is not None
    assert headers.pop("ce_traceparent")
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": id,
        "ce_source": source,
        "ce_type": type,
        "ce_time": time,
        "ce_partitionkey": key,
        "content-type": "application/json",
    }
    assert record.key == key.encode()


async def test_revenuecat(ingest: str, client: httpx.AsyncClient, settings: Settings) -> None:
    since = time.time()
    event = h.revenuecat_event()

    response = await h.revenuecat(settings, {"api_version": "1.0", "event": event}).post(
        client, ingest
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "records": 1}
    assert response.headers["x-request-id"]
    [record] = await records_of(settings, "revenuecat", 1)
    assert orjson.loads(record.value) == event
    assert_cloudevent(
        record,
        id=event["id"],
        source="revenuecat",
        type="revenuecat.INITIAL_PURCHASE",
        time="2026-01-01T00:00:00.123Z",
        key="u_rc_1",
        since=since,
    )


async def test_klaviyo_batch(ingest: str, client: httpx.AsyncClient, settings: Settings) -> None:
    since = time.time()
    elements = [h.klaviyo_element("01PROFILE1"), h.klaviyo_element("01PROFILE2")]

    response = await h.klaviyo_request(settings, h.klaviyo_batch(*elements)).post(client, ingest)

    assert response.status_code == 200, response.text
    assert response.json()["records"] == 2
    records = await records_of(settings, "klaviyo", 2)
    by_id = {h.headers_of(r)["ce_id"]: r for r in records}
    for element in elements:
        record = by_id[element["external_id"]]
        assert orjson.loads(record.value) == element
        assert_cloudevent(
            record,
            id=element["external_id"],
            source="klaviyo",
            type="klaviyo.event:klaviyo.subscribed_to_email_marketing",
            time="2026-01-01T00:00:05.000Z",
            key=element["payload"]["data"]["relationships"]["profile"]["data"]["id"],
            since=since,
        )


async def test_klaviyo_flow(ingest: str, client: httpx.AsyncClient, settings: Settings) -> None:
    since = time.time()
    body = h.flow_body()
    request = h.flow_request(settings, orjson.dumps(body, option=orjson.OPT_INDENT_2))

    response = await request.post(client, ingest)

    assert response.status_code == 200, response.text
    [record] = await records_of(settings, "klaviyo", 1)
    assert record.value == request.body  # the very bytes posted
    assert_cloudevent(
        record,
        id=body["event_id"],
        source="klaviyo",
        type="klaviyo.flow.profile",
        time="2026-01-01T00:00:07.000Z",
        key="01PROFILE1",
        since=since,
    )


async def test_kit_batch_signed_with_either_secret(
    ingest: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    since = time.time()
    first = [h.kit_event("Jane@Example.com"), h.kit_event("Bob@Example.com")]
    second = [h.kit_event("amy@example.com")]

    old = h.kit_request(settings, {"delivery_id": 1, "events": first}, secret="test-kit-old")
    new = h.kit_request(settings, {"delivery_id": 2, "events": second}, secret="test-kit-new")
    assert (await old.post(client, ingest)).status_code == 200
    assert (await new.post(client, ingest)).status_code == 200

    records = await records_of(settings, "kit", 3)
    by_id = {h.headers_of(r)["ce_id"]: r for r in records}
    for event in first + second:
        record = by_id[event["id"]]
        assert orjson.loads(record.value) == event
        assert_cloudevent(
            record,
            id=event["id"],
            source="kit",
            type="kit.subscriber.activated",
            time="2026-01-01T00:00:09.000Z",
            key=event["data"]["subscriber"]["email_address"].lower(),
            since=since,
        )


async def test_kit_legacy_retry_keeps_its_id(
    ingest: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    since = time.time()
    request = h.legacy_request(settings, h.legacy_body(), "subscriber.subscriber_unsubscribe")

    assert (await request.post(client, ingest)).status_code == 200
    assert (await request.post(client, ingest)).status_code == 200

    first, retry = await records_of(settings, "kit", 2)
    event_id = h.headers_of(first)["ce_id"]
    assert h.headers_of(retry)["ce_id"] == event_id
    value = orjson.loads(first.value)
    assert value == {
        "id": event_id,
        "type": "subscriber.subscriber_unsubscribe",
        "created": h.headers_of(first)["ingest_received_at"],
        "data": h.legacy_body(),
        "legacy": True,
    }
    assert_cloudevent(
        first,
        id=event_id,
        source="kit",
        type="kit.subscriber.subscriber_unsubscribe",
        time=h.headers_of(first)["ingest_received_at"],
        key="jane@example.com",
        since=since,
    )


async def test_events(ingest: str, client: httpx.AsyncClient, settings: Settings) -> None:
    since = time.time()
    items = [
        h.app_event(),
        h.app_event(type="conversion", conversion_type="purchase", conversion_value=12.5),
    ]

    response = await h.events_request(settings, {"events": items}).post(client, ingest)

    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "records": 2}
    records = await records_of(settings, "experiments", 2)
    by_id = {h.headers_of(r)["ce_id"]: r for r in records}
    for item in items:
        record = by_id[item["id"]]
        assert orjson.loads(record.value) == item
        assert_cloudevent(
            record,
            id=item["id"],
            source="app",
            type=f"app.{item['type']}",
            time="2026-01-01T00:00:11.000Z",
            key=h.USER,
            since=since,
        )


async def test_rejected_requests_publish_nothing(
    ingest: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    good = h.kit_request(settings, {"delivery_id": 1, "events": [h.kit_event()]})
    rejected = [
        good.with_body(good.body.replace(b"Jane", b"Jant")),
        good.with_headers(x_kit_signature=None),
        h.kit_request(settings, {"delivery_id": 1, "events": [{"type": "x"}]}),
        h.kit_request(settings, {"delivery_id": 1, "events": [h.kit_event()]}, now=1),
    ]
    for request in rejected:
        assert (await request.post(client, ingest)).status_code in (400, 401)
    assert (await good.post(client, ingest)).status_code == 200

    records = await records_of(settings, "kit", 1)
    assert [h.headers_of(r)["ce_id"] for r in records] == [
        orjson.loads(good.body)["events"][0]["id"]
    ]
    metrics = (await client.get(ingest + "/metrics")).text
    assert (
        f'ingest_records_produced_total{{topic="{topic_name(settings.topic_prefix, "kit")}"}} 1.0'
        in metrics
    )
    assert 'ingest_requests_total{endpoint="kit",status="200"} 1.0' in metrics
    assert 'ingest_signature_failures_total{provider="kit",reason="bad_signature"} 1.0' in metrics
    assert 'ingest_signature_failures_total{provider="kit",reason="stale_timestamp"} 1.0' in metrics


async def test_klaviyo_largest_batch(
    ingest: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    elements = [h.klaviyo_element(f"01PROFILE{i % 37}") for i in range(1000)]
    request = h.klaviyo_request(settings, h.klaviyo_batch(*elements))
    assert len(request.body) > 256 * 1024  # decoded off the event loop

    response = await request.post(client, ingest)

    assert response.status_code == 200, response.text
    assert response.json()["records"] == 1000
    records = await records_of(settings, "klaviyo", 1000)
    assert {h.headers_of(r)["ce_id"] for r in records} == {e["external_id"] for e in elements}
    # Every event of one profile is on one partition, in the order of the batch.
    by_key: dict[bytes, list[str]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key, []).append(h.headers_of(record)["ce_id"])
    for key, ids in by_key.items():
        assert len({r.partition for r in records if r.key == key}) == 1
        assert ids == [
            e["external_id"]
            for e in elements
            if e["payload"]["data"]["relationships"]["profile"]["data"]["id"].encode() == key
        ]
