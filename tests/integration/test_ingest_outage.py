"""Kafka going away and coming back, with the producer the app's lifespan owns."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest

from contract.topics import topic_name
from core.devstack import TansuBroker
from core.settings import Settings
from core.topics import create_topics
from ingest.providers import kit_legacy
from tests.conftest import make_settings
from tests.integration import ingest_harness as h
from tests.support import read_records

PRODUCE_TIMEOUT_S = 1.5

pytestmark = pytest.mark.slow


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_broker_outage_answers_503_then_the_same_request_succeeds(
    private_broker: TansuBroker,
) -> None:
    settings = make_settings(None, private_broker.bootstrap, f"out{uuid.uuid4().hex[:6]}.")
    settings = settings.with_overrides(produce_timeout_s=PRODUCE_TIMEOUT_S)
    await create_topics(settings)
    # No publisher injected: the lifespan builds, connects and finally flushes its own.
    async with h.serving(settings) as url, httpx.AsyncClient(timeout=15) as client:

        async def ready() -> bool:
            return (await client.get(url + "/readyz")).status_code == 200

        await eventually(ready)
        first = h.kit_request(settings, {"delivery_id": 1, "events": [h.kit_event()]})
        assert (await first.post(client, url)).status_code == 200

        await private_broker.stop()
        requests = every_endpoint(settings)
        started = time.monotonic()
        responses = await asyncio.gather(*(r.post(client, url) for r in requests))
        elapsed = time.monotonic() - started

        for response in responses:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["error"] == "unavailable"
        assert elapsed < PRODUCE_TIMEOUT_S + 1
        assert (await client.get(url + "/readyz")).status_code == 503

        await private_broker.start()
        await create_topics(settings)  # memory storage: the restarted broker has no topics
        await eventually(ready)
        # Connected is not yet produced: the producer may still be refreshing the new
        # broker's metadata, and a request in that window is answered 503 like any outage.
        # A provider retries it; so does this test, and every retry must end in a 2xx.
        retried = [await until_accepted(client, url, r) for r in requests]

        assert [r.status_code for r in retried] == [200, 200, 200, 200, 200, 202]
        # The restarted broker forgot the first record; what it holds now are the retried
        # events (some possibly twice, if the producer delivered a timed-out send after all).
        for stream, wanted in expected_ids(requests).items():
            topic = topic_name(settings.topic_prefix, stream)
            records = await read_records(settings.require_kafka(), topic, len(wanted))
            while not wanted <= {h.headers_of(r)["ce_id"] for r in records}:
                # Late duplicates took slots; the missing record comes after them.
                assert len(records) < len(wanted) + 10, "records missing from the topic"
                records = await read_records(settings.require_kafka(), topic, len(records) + 1)
            assert {h.headers_of(r)["ce_id"] for r in records} == wanted


async def until_accepted(
    client: httpx.AsyncClient, url: str, request: h.Request, timeout: float = 20.0
) -> httpx.Response:
    """Post as a provider would: again after each 503 until a 2xx or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        response = await request.post(client, url)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        assert response.headers["retry-after"].isdigit()
        await asyncio.sleep(0.2)


def every_endpoint(settings: Settings) -> list[h.Request]:
    return [
        h.revenuecat(settings, {"event": h.revenuecat_event()}),
        h.klaviyo_request(settings, h.klaviyo_batch(h.klaviyo_element())),
        h.flow_request(settings, h.flow_body()),
        h.kit_request(settings, {"delivery_id": 2, "events": [h.kit_event()]}),
        h.legacy_request(settings, h.legacy_body("legacy@example.com")),
        h.events_request(settings, {"events": [h.app_event()]}),
    ]


def expected_ids(requests: list[h.Request]) -> dict[str, set[str]]:
    rc, kl, flow, kit, legacy, app = (orjson.loads(r.body) for r in requests)
    legacy_id = kit_legacy.build_records(
        "subscriber.subscriber_activate", legacy, requests[4].body, "-"
    )[0].header("ce_id")
    assert legacy_id is not None
    return {
        "revenuecat": {rc["event"]["id"]},
        "klaviyo": {kl["data"][0]["external_id"], flow["event_id"]},
        "kit": {kit["events"][0]["id"], legacy_id},
        "experiments": {app["events"][0]["id"]},
    }


async def test_service_starts_not_ready_while_kafka_is_unreachable(
    private_broker: TansuBroker,
) -> None:
    settings: Settings = make_settings(
        None, private_broker.bootstrap, f"late{uuid.uuid4().hex[:6]}."
    ).with_overrides(produce_timeout_s=PRODUCE_TIMEOUT_S)
    await private_broker.stop()
    async with h.serving(settings) as url, httpx.AsyncClient(timeout=15) as client:
        assert (await client.get(url + "/healthz")).status_code == 200
        assert (await client.get(url + "/readyz")).status_code == 503
        request = h.events_request(settings, {"events": [h.app_event()]})
        assert (await request.post(client, url)).status_code == 503

        await private_broker.start()
        await create_topics(settings)

        async def ready() -> bool:
            return (await client.get(url + "/readyz")).status_code == 200

        await eventually(ready)
        assert (await request.post(client, url)).status_code == 202
