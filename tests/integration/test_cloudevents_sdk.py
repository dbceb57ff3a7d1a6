"""An internal subscriber reads a published record with the CloudEvents SDK for Python
(Kafka binary mode, as docs/contract.md §5 promises) and finds the event in it."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from contract.topics import topic_name
from core.settings import Settings
from tests.integration import ingest_harness as h
from tests.support import read_records

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_published_record_decodes_as_a_cloudevent(settings: Settings) -> None:
    item = h.app_event()
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        request = h.events_request(settings, orjson.dumps({"events": [item]}))
        async with httpx.AsyncClient() as client:
            response = await request.with_headers(traceparent=TRACEPARENT).post(client, url)
    assert response.status_code == 202
    [record] = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "experiments"), 1
    )

    event = from_binary_event(
        KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    )

    assert event.get_specversion() == "1.0"
    assert (event.get_id(), event.get_source(), event.get_type()) == (
        item["id"], "app", "app.impression",
    )  # fmt: skip
    assert event.get_time() == datetime(2026, 1, 1, 0, 0, 11, tzinfo=UTC)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("partitionkey") == item["user_id"]
    assert event.get_extension("traceparent") == TRACEPARENT  # distributed-tracing extension
    assert event.get_data() == item
