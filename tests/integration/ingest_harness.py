"""Running the ingest app under a real uvicorn server, and building correctly signed requests."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httpx
import orjson
import uvicorn
from opentelemetry.sdk.trace import TracerProvider

from core.settings import Settings
from ingest.providers import klaviyo
from ingest.publisher import KafkaPublisher, Publisher
from ingest.serve import Server, make_server
from ingest.verify import sign_timestamped

USER = "0b5e7a52-6d1f-4c8e-9a43-2f1d7c3e9b10"


@asynccontextmanager
async def kafka_publisher(settings: Settings) -> AsyncIterator[KafkaPublisher]:
    publisher = KafkaPublisher(settings)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.close()


def loopback() -> tuple[socket.socket, int]:
    """A bound socket on a free loopback port, and the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@asynccontextmanager
async def running(server: uvicorn.Server, sock: socket.socket) -> AsyncIterator[str]:
    """``server`` serving on ``sock`` until the block ends; yields its base URL."""
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the server stopped during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not start")
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serving(settings: Settings, publisher: Publisher | None = None) -> AsyncIterator[str]:
    """The app on a free loopback port under uvicorn; yields its base URL."""
    async with serving_server(settings, publisher) as (url, _):
        yield url


@asynccontextmanager
async def serving_server(
    settings: Settings,
    publisher: Publisher | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[tuple[str, Server]]:
    """:func:`serving`, yielding the uvicorn server too (its ``config.app`` is the app)."""
    sock, port = loopback()
    server = make_server(
        settings.with_overrides(port=port),
        publisher=publisher,
        host="127.0.0.1",
        tracer_provider=tracer_provider,
    )
    async with running(server, sock) as base:
        yield base, server


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def with_headers(self, **changes: str | None) -> Request:
        headers = {k.lower(): v for k, v in self.headers.items()}
        for name, value in changes.items():
            key = name.replace("_", "-").lower()
            if value is None:
                headers.pop(key, None)
            else:
                headers[key] = value
        return Request(self.path, self.body, headers)

    def with_body(self, body: bytes) -> Request:
        return Request(self.path, body, self.headers)

    async def post(self, client: httpx.AsyncClient, url: str) -> httpx.Response:
        return await client.post(url + self.path, content=self.body, headers=self.headers)


def revenuecat_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"rc-{uuid.uuid4()}",
        "type": "INITIAL_PURCHASE",
        "app_user_id": "u_rc_alias_1",
        "original_app_user_id": "u_rc_1",
        "aliases": ["u_rc_1", "u_rc_alias_1"],
        "event_timestamp_ms": 1767225600123,
        "environment": "SANDBOX",
        "price": 9.99,
        "currency": "USD",
        "subscriber_attributes": {"$email": {"value": "jane@example.com", "updated_at_ms": 1}},
    }
    event.update(changes)
    return event


def revenuecat(
    settings: Settings, body: Mapping[str, Any] | bytes, now: float | None = None
) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert settings.revenuecat_authorization and settings.revenuecat_webhook_secret
    signature = sign_timestamped(
        (settings.revenuecat_webhook_secret,), int(now or time.time()), raw
    )
    return Request(
        "/webhooks/revenuecat",
        raw,
        {
            "authorization": settings.revenuecat_authorization,
            "x-revenuecat-webhook-signature": signature,
        },
    )


def klaviyo_element(profile: str = "01PROFILE1", **changes: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "external_id": f"kl-{uuid.uuid4()}",
        "topic": "event:klaviyo.subscribed_to_email_marketing",
        "payload": {
            "data": {
                "type": "event",
                "id": "01EVENT",
                "attributes": {"datetime": "2026-01-01T00:00:05+00:00", "timestamp": 1767225605},
                "relationships": {"profile": {"data": {"type": "profile", "id": profile}}},
            }
        },
    }
    element.update(changes)
    return element


def klaviyo_request(
    settings: Settings,
    body: Mapping[str, Any] | bytes,
    now: float | None = None,
    webhook_id: str = "wh_test",
) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert settings.klaviyo_webhook_secret
    sent = formatdate(now or time.time(), usegmt=True)
    return Request(
        "/webhooks/klaviyo",
        raw,
        {
            "klaviyo-webhook-id": webhook_id,
            "klaviyo-timestamp": sent,
            "klaviyo-signature": klaviyo.signature(settings.klaviyo_webhook_secret, raw, sent),
        },
    )


def klaviyo_batch(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"data": list(elements), "meta": {"klaviyo_webhook_id": "wh_test"}}


def flow_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"flow-{uuid.uuid4()}",
        "occurred_at": "2026-01-01T00:00:07Z",
        "profile": {
            "id": "01PROFILE1",
            "email": "jane@example.com",
            "phone_number": "+15005550006",
            "first_name": "Jane",
            "last_name": "Doe",
            "external_id": "user_1",
            "timezone": "Europe/Berlin",
            "properties": {"environment": "dev"},
        },
    }
    body.update(changes)
    return body


def flow_request(settings: Settings, body: Mapping[str, Any] | bytes) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Request(f"/webhooks/klaviyo/flow/{settings.klaviyo_flow_token}", raw)


def kit_event(email: str = "Jane@Example.com", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"kit-{uuid.uuid4()}",
        "type": "subscriber.activated",
        "created": "2026-01-01T00:00:09Z",
        "data": {"subscriber": {"id": 42, "email_address": email, "state": "active", "fields": {}}},
    }
    event.update(changes)
    return event


def kit_request(
    settings: Settings,
    body: Mapping[str, Any] | bytes,
    now: float | None = None,
    secret: str | None = None,
) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    secrets = (secret,) if secret else settings.kit_webhook_secrets[-1:]
    signature = sign_timestamped(secrets, int(now or time.time()), raw)
    return Request("/webhooks/kit", raw, {"x-kit-signature": signature})


def legacy_body(email: str = "Jane@Example.com") -> dict[str, Any]:
    return {"subscriber": {"id": 42, "email_address": email, "state": "active", "fields": {}}}


def legacy_request(
    settings: Settings,
    body: Mapping[str, Any] | bytes,
    event_name: str = "subscriber.subscriber_activate",
) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Request(f"/webhooks/kit/legacy/{settings.kit_legacy_token}/{event_name}", raw)


def app_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "impression",
        "user_id": USER,
        "experiment": "checkout-button",
        "variant": "green",
        "occurred_at": "2026-01-01T00:00:11Z",
        "scroll_depth_percent": 70,
    }
    event.update(changes)
    return event


def events_request(settings: Settings, body: Mapping[str, Any] | bytes) -> Request:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Request("/events", raw, {"authorization": f"Bearer {settings.events_api_key}"})


def headers_of(record: Any) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}
