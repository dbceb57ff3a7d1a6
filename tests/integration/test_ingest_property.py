"""Property over real HTTP: arbitrary bodies and headers, signed or not, never produce a 500,
and a hostile signed body is either refused with nothing published or published whole."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.settings import Settings
from core.topics import create_topics
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h
from tests.unit.test_ingest_accept_property import (
    TEMPLATES,
    hostile,
    hostile_body,
    json_values,
    random_headers,
)


@dataclass(frozen=True, slots=True)
class Server:
    settings: Settings
    url: str
    client: httpx.AsyncClient


@pytest.fixture(scope="module")
async def server(stack: SessionStack) -> AsyncIterator[Server]:
    config = make_settings(None, stack.bootstrap, f"prop{uuid.uuid4().hex[:8]}.")
    await create_topics(config)
    async with (
        h.kafka_publisher(config) as publisher,
        h.serving(config, publisher) as url,
        httpx.AsyncClient(timeout=15) as client,
    ):
        yield Server(config, url, client)


def request_for(target: str, s: Settings, raw: bytes, signed: bool) -> h.Request:
    if target == "revenuecat":
        return h.revenuecat(s, raw) if signed else h.Request("/webhooks/revenuecat", raw)
    if target == "klaviyo":
        return h.klaviyo_request(s, raw) if signed else h.Request("/webhooks/klaviyo", raw)
    if target == "kit":
        return h.kit_request(s, raw) if signed else h.Request("/webhooks/kit", raw)
    if target == "events":
        return h.events_request(s, raw) if signed else h.Request("/events", raw)
    if target == "flow":
        token = s.klaviyo_flow_token if signed else "guess"
        return h.Request(f"/webhooks/klaviyo/flow/{token}", raw)
    token = s.kit_legacy_token if signed else "guess"
    return h.Request(f"/webhooks/kit/legacy/{token}/subscriber.subscriber_activate", raw)


bodies = json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300)
targets = st.sampled_from(["revenuecat", "klaviyo", "kit", "events", "flow", "legacy"])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(target=targets, raw=bodies, headers=random_headers, signed=st.booleans())
@example(target="kit", raw=b"{}", headers={"x-kit-signature": " "}, signed=False)
async def test_no_request_is_a_server_error(
    server: Server, target: str, raw: bytes, headers: dict[str, str], signed: bool
) -> None:
    request = request_for(target, server.settings, raw, signed)
    # Header values go out as raw latin-1 bytes, beyond what httpx would encode itself.
    # Leading and trailing whitespace is not part of a field value (RFC 9110 5.5): parsers
    # strip it, and the HTTP client refuses to send it, so it is stripped here too.
    chosen = request.headers if signed else headers
    sent = {name.encode(): value.strip(" \t").encode("latin-1") for name, value in chosen.items()}
    response = await server.client.post(server.url + request.path, content=raw, headers=sent)

    assert response.status_code < 500, response.text
    if response.headers["content-type"] == "application/json":
        assert set(response.json()) in ({"status", "records"}, {"error", "detail"})
    else:
        # Bytes HTTP forbids in a header (e.g. DEL) are refused by the HTTP parser itself.
        assert response.status_code == 400


TARGET_OF_ENDPOINT = {
    "revenuecat": "revenuecat",
    "klaviyo": "klaviyo",
    "klaviyo_flow": "flow",
    "kit": "kit",
    "kit_legacy": "legacy",
    "events": "events",
}


async def records_produced(server: Server) -> float:
    """ingest_records_produced_total over every topic: records the broker acknowledged."""
    text = (await server.client.get(server.url + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ingest_records_produced_total{")
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.sampled_from(sorted(TEMPLATES)),
    data=st.data(),
    fragment=hostile,
    duplicate=st.booleans(),
)
async def test_hostile_signed_bodies_publish_only_what_is_accepted(
    server: Server, endpoint: str, data: st.DataObject, fragment: str, duplicate: bool
) -> None:
    path = data.draw(st.sampled_from(TEMPLATES[endpoint][1]), label="path")
    raw = hostile_body(endpoint, path, fragment, duplicate)
    request = request_for(TARGET_OF_ENDPOINT[endpoint], server.settings, raw, signed=True)
    before = await records_produced(server)
    response = await request.post(server.client, server.url)
    published = await records_produced(server) - before

    assert response.status_code < 500, response.text
    if response.status_code < 300:
        assert published == response.json()["records"]
    else:
        assert response.status_code == 400, response.text
        assert published == 0
