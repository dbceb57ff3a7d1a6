"""Every way a request is refused, over real HTTP: 401, 400, 413 and 404 (fail closed).

Nothing here publishes, so one server (and one set of topics) serves the whole module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import orjson
import pytest

from core.settings import Settings
from core.topics import create_topics
from ingest.registry import ENDPOINTS
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h

MAX_BODY = 64 * 1024
STALE = time.time() - 301


@dataclass(frozen=True, slots=True)
class Servers:
    settings: Settings
    url: str  # every endpoint configured
    bare_url: str  # no secret configured at all


@pytest.fixture(scope="module")
async def servers(stack: SessionStack) -> AsyncIterator[Servers]:
    prefix = f"rej{uuid.uuid4().hex[:8]}."
    settings = make_settings(None, stack.bootstrap, prefix).with_overrides(max_body_bytes=MAX_BODY)
    await create_topics(settings)
    bare = Settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=prefix)
    async with (
        h.kafka_publisher(settings) as publisher,
        h.serving(settings, publisher) as url,
        h.serving(bare, publisher) as bare_url,
    ):
        yield Servers(settings, url, bare_url)


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as created:
        yield created


Build = Callable[[Settings], h.Request]


def rc_ok(s: Settings) -> h.Request:
    return h.revenuecat(s, {"event": h.revenuecat_event()})


def kl_ok(s: Settings) -> h.Request:
    return h.klaviyo_request(s, h.klaviyo_batch(h.klaviyo_element()))


def kit_ok(s: Settings) -> h.Request:
    return h.kit_request(s, {"delivery_id": 1, "events": [h.kit_event()]})


def ev_ok(s: Settings) -> h.Request:
    return h.events_request(s, {"events": [h.app_event()]})


def tampered(build: Build) -> Build:
    def changed(s: Settings) -> h.Request:
        request = build(s)
        body = bytearray(request.body)
        body[len(body) // 2] ^= 0x01
        return request.with_body(bytes(body))

    return changed


UNAUTHORIZED = [
    # RevenueCat
    pytest.param(
        lambda s: rc_ok(s).with_headers(authorization="Bearer nope"),
        "bad_credentials",
        id="rc wrong authorization",
    ),
    pytest.param(
        lambda s: rc_ok(s).with_headers(authorization=None),
        "missing_header",
        id="rc no authorization",
    ),
    pytest.param(
        lambda s: rc_ok(s.with_overrides(revenuecat_webhook_secret="wrong")),
        "bad_signature",
        id="rc wrong secret",
    ),
    pytest.param(tampered(rc_ok), "bad_signature", id="rc tampered body"),
    pytest.param(
        lambda s: h.revenuecat(s, {"event": h.revenuecat_event()}, now=STALE),
        "stale_timestamp",
        id="rc stale",
    ),
    pytest.param(
        lambda s: h.revenuecat(s, {"event": h.revenuecat_event()}, now=time.time() + 600),
        "future_timestamp",
        id="rc future",
    ),
    pytest.param(
        lambda s: rc_ok(s).with_headers(x_revenuecat_webhook_signature=None),
        "missing_header",
        id="rc no signature",
    ),
    pytest.param(
        lambda s: rc_ok(s).with_headers(x_revenuecat_webhook_signature="v1=abc"),
        "malformed_header",
        id="rc malformed signature",
    ),
    # Klaviyo system webhooks
    pytest.param(
        lambda s: kl_ok(s.with_overrides(klaviyo_webhook_secret="wrong")),
        "bad_signature",
        id="klaviyo wrong secret",
    ),
    pytest.param(tampered(kl_ok), "bad_signature", id="klaviyo tampered body"),
    pytest.param(
        lambda s: h.klaviyo_request(s, h.klaviyo_batch(h.klaviyo_element()), now=STALE),
        "stale_timestamp",
        id="klaviyo stale",
    ),
    pytest.param(
        lambda s: h.klaviyo_request(s, h.klaviyo_batch(), now=time.time() + 600),
        "future_timestamp",
        id="klaviyo future",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_signature=None),
        "missing_header",
        id="klaviyo no signature",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_timestamp=None),
        "missing_header",
        id="klaviyo no timestamp",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_webhook_id=None),
        "missing_header",
        id="klaviyo no webhook id",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_signature="sha256=xyz"),
        "malformed_header",
        id="klaviyo malformed signature",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_timestamp="last tuesday"),
        "malformed_header",
        id="klaviyo malformed timestamp",
    ),
    pytest.param(
        lambda s: kl_ok(s).with_headers(klaviyo_webhook_id="wh_other"),
        "webhook_id_mismatch",
        id="klaviyo webhook id mismatch",
    ),
    # Klaviyo flow
    pytest.param(
        lambda s: h.Request("/webhooks/klaviyo/flow/wrong-token", orjson.dumps(h.flow_body())),
        "bad_credentials",
        id="flow wrong token",
    ),
    # Kit
    pytest.param(
        lambda s: h.kit_request(s, {"events": [h.kit_event()]}, secret="wrong"),
        "bad_signature",
        id="kit wrong secret",
    ),
    pytest.param(tampered(kit_ok), "bad_signature", id="kit tampered body"),
    pytest.param(
        lambda s: h.kit_request(s, {"events": [h.kit_event()]}, now=STALE),
        "stale_timestamp",
        id="kit stale",
    ),
    pytest.param(
        lambda s: h.kit_request(s, {"events": [h.kit_event()]}, now=time.time() + 600),
        "future_timestamp",
        id="kit future",
    ),
    pytest.param(
        lambda s: kit_ok(s).with_headers(x_kit_signature=None),
        "missing_header",
        id="kit no signature",
    ),
    pytest.param(
        lambda s: kit_ok(s).with_headers(x_kit_signature="t=1,v2=abc"),
        "malformed_header",
        id="kit malformed signature",
    ),
    # Kit legacy
    pytest.param(
        lambda s: h.Request(
            "/webhooks/kit/legacy/wrong/subscriber.subscriber_activate",
            orjson.dumps(h.legacy_body()),
        ),
        "bad_credentials",
        id="legacy wrong token",
    ),
    # First-party events
    pytest.param(
        lambda s: ev_ok(s).with_headers(authorization="Bearer wrong"),
        "bad_credentials",
        id="events wrong key",
    ),
    pytest.param(
        lambda s: ev_ok(s).with_headers(authorization=None), "missing_header", id="events no key"
    ),
]


async def signature_failures(client: httpx.AsyncClient, url: str, reason: str) -> float:
    """ingest_signature_failures_total for ``reason``, summed over providers."""
    text = (await client.get(url + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ingest_signature_failures_total{") and f'reason="{reason}"' in line
    )


@pytest.mark.parametrize(("build", "reason"), UNAUTHORIZED)
async def test_unauthorized(
    servers: Servers, client: httpx.AsyncClient, build: Build, reason: str
) -> None:
    before = await signature_failures(client, servers.url, reason)
    response = await build(servers.settings).post(client, servers.url)

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    assert await signature_failures(client, servers.url, reason) == before + 1


BAD_REQUESTS = [
    pytest.param(
        lambda s: h.revenuecat(s, b"{not json"), "body is not valid JSON", id="rc bad json"
    ),
    pytest.param(
        lambda s: h.revenuecat(s, {"event": h.revenuecat_event(id=None)}),
        "event.id: is required",
        id="rc no id",
    ),
    pytest.param(
        lambda s: h.revenuecat(s, b"[1, 2]"), "body must be a JSON object", id="rc array body"
    ),
    pytest.param(
        lambda s: h.klaviyo_request(s, b"\xff\xfe"), "body is not valid JSON", id="klaviyo bad json"
    ),
    pytest.param(
        lambda s: h.klaviyo_request(s, h.klaviyo_batch(h.klaviyo_element(external_id=None))),
        "data[0].external_id: is required",
        id="klaviyo no id",
    ),
    pytest.param(lambda s: h.flow_request(s, b""), "body is not valid JSON", id="flow empty body"),
    pytest.param(
        lambda s: h.flow_request(s, h.flow_body(event_id=None)),
        "event_id: is required",
        id="flow no id",
    ),
    pytest.param(lambda s: h.kit_request(s, b"{"), "body is not valid JSON", id="kit bad json"),
    pytest.param(
        lambda s: h.kit_request(s, {"events": [h.kit_event(id=None)]}),
        "events[0].id: is required",
        id="kit no id",
    ),
    pytest.param(
        lambda s: h.kit_request(s, {"events": [h.kit_event(type=None)]}),
        "events[0].type: is required",
        id="kit no type",
    ),
    pytest.param(
        lambda s: h.legacy_request(s, b"nope"), "body is not valid JSON", id="legacy bad json"
    ),
    pytest.param(
        lambda s: h.legacy_request(s, h.legacy_body(), "Not An Event"),
        "event_name:",
        id="legacy bad event name",
    ),
    pytest.param(
        lambda s: h.events_request(s, b"{,}"), "body is not valid JSON", id="events bad json"
    ),
    pytest.param(
        lambda s: h.events_request(s, {"events": [h.app_event(id=None)]}),
        "events[0].id: is required",
        id="events no id",
    ),
    pytest.param(
        lambda s: h.events_request(
            s,
            {
                "events": [
                    h.app_event(),
                    h.app_event(),
                    h.app_event(),
                    h.app_event(scroll_depth_percent=101),
                ]
            },
        ),
        "events[3].scroll_depth_percent: must be between 0 and 100",
        id="events invalid item",
    ),
]


@pytest.mark.parametrize(("build", "detail"), BAD_REQUESTS)
async def test_bad_request(
    servers: Servers, client: httpx.AsyncClient, build: Build, detail: str
) -> None:
    response = await build(servers.settings).post(client, servers.url)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert response.json()["detail"].startswith(detail)


OVERSIZE = [
    pytest.param(lambda s, body: h.revenuecat(s, body), id="revenuecat"),
    pytest.param(lambda s, body: h.klaviyo_request(s, body), id="klaviyo"),
    pytest.param(lambda s, body: h.flow_request(s, body), id="klaviyo_flow"),
    pytest.param(lambda s, body: h.kit_request(s, body), id="kit"),
    pytest.param(lambda s, body: h.legacy_request(s, body), id="kit_legacy"),
    pytest.param(lambda s, body: h.events_request(s, body), id="events"),
]
PADDING = b'{"pad": "' + b"x" * MAX_BODY + b'"}'


@pytest.mark.parametrize("build", OVERSIZE)
async def test_oversize_declared(
    servers: Servers, client: httpx.AsyncClient, build: Callable[[Settings, bytes], h.Request]
) -> None:
    response = await build(servers.settings, PADDING).post(client, servers.url)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("build", OVERSIZE)
async def test_oversize_streamed_is_refused_without_reading_it_all(
    servers: Servers, client: httpx.AsyncClient, build: Callable[[Settings, bytes], h.Request]
) -> None:
    request = build(servers.settings, PADDING)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        # Far more than the limit, without a Content-Length (chunked encoding).
        nonlocal sent
        for _ in range(400):
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    try:
        response = await client.post(
            servers.url + request.path, content=chunks(), headers=request.headers
        )
    except (httpx.WriteError, httpx.ReadError):
        # The server answered and closed the connection before the client finished writing
        # (the client then sees the reset instead of the answer).
        assert sent < 400 * 16 * 1024
        return
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
async def test_unconfigured_endpoint_is_not_found(
    servers: Servers, client: httpx.AsyncClient, endpoint: object
) -> None:
    path = getattr(endpoint, "path").format(token="t", event_name="subscriber.x")  # noqa: B009
    response = await client.post(
        servers.bare_url + path, content=b"{}", headers={"authorization": "Bearer x"}
    )

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "not found"}


async def test_operations_endpoints(servers: Servers, client: httpx.AsyncClient) -> None:
    assert (await client.get(servers.url + "/healthz")).json() == {"status": "ok"}
    assert (await client.get(servers.url + "/readyz")).status_code == 200
    spec = (await client.get(servers.url + "/openapi.json")).json()
    assert {e.path for e in ENDPOINTS} <= set(spec["paths"])
    metrics = await client.get(servers.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "ingest_producer_ready 1.0" in metrics.text
    unknown = await client.get(servers.url + "/nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
