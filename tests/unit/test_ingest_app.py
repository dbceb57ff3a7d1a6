"""The app object itself, in process (no broker): construction, metrics, OpenAPI, errors."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from openapi_spec_validator import validate

from core.settings import Settings
from ingest import openapi
from ingest.app import create_app
from ingest.exchange import header_dict, request_id
from ingest.publisher import KafkaPublisher
from ingest.registry import ENDPOINTS

SETTINGS = Settings(events_api_key="k", kit_legacy_token="legacy")
METRIC_NAMES = (
    "ingest_requests_total",
    "ingest_signature_failures_total",
    "ingest_produce_latency_seconds",
    "ingest_records_produced_total",
    "ingest_request_duration_seconds",
    "ingest_producer_ready",
    "ingest_produce_buffer_bytes",
    "ingest_produce_buffer_limit_bytes",
    "ingest_produce_buffer_waiting_requests",
    "ingest_head_refusals_total",
)


def client_for(settings: Settings = SETTINGS) -> httpx.AsyncClient:
    # No lifespan runs under ASGITransport, so no publisher exists: requests that pass
    # verification end in 503, which is what an unconnected producer must answer.
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://ingest")


async def test_app_can_be_created_twice_in_one_process() -> None:
    async with client_for() as first, client_for() as second:
        for client in (first, second):
            assert (await client.get("/healthz")).status_code == 200


async def test_metrics_expose_every_ingest_metric() -> None:
    async with client_for() as client:
        await client.post("/events", content=b"{}", headers={"authorization": "Bearer no"})
        text = (await client.get("/metrics")).text
    for name in METRIC_NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in text
    assert 'ingest_requests_total{endpoint="events",status="401"} 1.0' in text


async def test_the_producer_byte_budget_is_read_when_scraped() -> None:
    publisher = KafkaPublisher(SETTINGS.with_overrides(produce_buffer_bytes=1000))
    app = create_app(SETTINGS, publisher)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest"
    ) as client:
        assert publisher.budget.try_acquire(600)
        waiting = asyncio.create_task(publisher.budget.acquire(600))
        await asyncio.sleep(0)
        text = (await client.get("/metrics")).text
        publisher.budget.release(600)
        await waiting
    assert "ingest_produce_buffer_bytes 600.0" in text
    assert "ingest_produce_buffer_limit_bytes 1000.0" in text
    assert "ingest_produce_buffer_waiting_requests 1.0" in text


async def test_openapi_lists_every_endpoint() -> None:
    async with client_for() as client:
        spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    for endpoint in ENDPOINTS:
        operation = spec["paths"][endpoint.path]["post"]
        assert str(endpoint.success_status) in operation["responses"]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == endpoint.body


async def test_openapi_is_a_valid_openapi_3_1_document() -> None:
    async with client_for() as client:
        spec = (await client.get("/openapi.json")).json()
    validate(spec)  # raises naming the first error
    text = json.dumps(spec)
    for name in re.findall(r'"#/components/schemas/(\w+)"', text):
        assert name in spec["components"]["schemas"], name


def test_openapi_says_how_each_endpoint_authenticates() -> None:
    spec = openapi.document(ENDPOINTS, "test")
    operations = {e.name: spec["paths"][e.path]["post"] for e in ENDPOINTS}
    schemes = spec["components"]["securitySchemes"]

    assert operations["events"]["security"] == [{"eventsBearer": []}]
    assert schemes["eventsBearer"] == {
        **schemes["eventsBearer"],
        "type": "http",
        "scheme": "bearer",
    }
    assert operations["revenuecat"]["security"] == [{"revenuecatAuthorization": []}]
    assert schemes["revenuecatAuthorization"]["name"] == "Authorization"
    required = {
        name: {p["name"] for p in op["parameters"] if p["required"]}
        for name, op in operations.items()
    }
    assert required["kit"] == {"X-Kit-Signature"}
    assert required["klaviyo"] == {"Klaviyo-Webhook-Id", "Klaviyo-Timestamp", "Klaviyo-Signature"}
    assert required["klaviyo_flow"] == {"token"}
    assert required["kit_legacy"] == {"token", "event_name"}
    unavailable = operations["events"]["responses"]["503"]
    assert {"Retry-After", "X-Request-Id"} <= set(unavailable["headers"])


async def test_accepted_request_without_a_producer_is_503_with_retry_after() -> None:
    body = b'{"subscriber": {"id": 1, "email_address": "a@b.c", "state": "active"}}'
    async with client_for() as client:
        response = await client.post(
            "/webhooks/kit/legacy/legacy/subscriber.subscriber_activate", content=body
        )
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "unavailable"
    assert ready.status_code == 503


async def test_errors_are_json() -> None:
    async with client_for() as client:
        unknown = await client.get("/nope")
        wrong_method = await client.get("/events")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "detail": "not found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param("abc-123", True, id="token"),
        pytest.param("a" * 65, False, id="too long"),
        pytest.param("a b", False, id="space"),
        pytest.param(None, False, id="absent"),
    ],
)
def test_request_id(given: str | None, kept: bool) -> None:
    headers = {} if given is None else {"x-request-id": given}
    assert (request_id(headers) == given) is kept
    assert request_id(headers)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param([], {}, id="none"),
        pytest.param(
            [(b"authorization", b"Bearer k"), (b"x-a", b"1")],
            {"authorization": "Bearer k", "x-a": "1"},
            id="plain",
        ),
        pytest.param([(b"x-a", b"1"), (b"x-a", b"2")], {"x-a": "1"}, id="first of a repeat wins"),
        pytest.param([(b"x-a", b"caf\xe9")], {"x-a": "caf\u00e9"}, id="latin-1 as received"),
    ],
)
def test_header_dict(raw: list[tuple[bytes, bytes]], expected: dict[str, str]) -> None:
    assert header_dict(raw) == expected


@pytest.mark.parametrize(
    "root_path",
    [
        pytest.param("", id="direct to the handler"),
        pytest.param("/ingest", id="through Starlette's routing"),
    ],
)
async def test_fixed_webhook_paths_answer_the_same_with_and_without_the_direct_path(
    root_path: str,
) -> None:
    app = create_app(SETTINGS)
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        refused = await client.post(
            f"{root_path}/events", content=b"{}", headers={"authorization": "Bearer no"}
        )
        unconfigured = await client.post(f"{root_path}/webhooks/revenuecat", content=b"{}")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["connection"] == "close"  # refused before the body was read
    assert refused.headers["x-request-id"]
    assert refused.json()["error"] == "unauthorized"
    assert unconfigured.status_code == 404
