"""Request bodies for the HTTP scenarios and event items for the consumer benchmark.

Bodies are realistic (the fields providers really send) and every event id is distinct;
signed requests are signed once, ahead of the run, so the load generator spends its cycles
sending rather than hashing. A pool is replayed round-robin: the server does the same work
for a replayed body (ingest does not deduplicate; consumers do).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from contract.records import rfc3339
from core.settings import Settings
from ingest.verify import sign_timestamped
from ingester.samples import revenuecat_sample

# Secrets of the benchmark's own server; nothing else ever accepts them.
SECRETS = Settings(
    revenuecat_authorization="Bearer bench-revenuecat",
    revenuecat_webhook_secret="bench-revenuecat-hmac",
    kit_webhook_secrets=("bench-kit",),
    events_api_key="bench-events",
)
KIT_EVENTS_PER_DELIVERY = 10
EVENTS_PER_BATCH = 50
EXPERIMENT = "bench-checkout"
VARIANTS = ("control", "treatment")


def secret_env() -> dict[str, str]:
    """The webhook secrets as the server reads them (docs/contract.md §3)."""
    return {
        "REVENUECAT_AUTHORIZATION": SECRETS.revenuecat_authorization or "",
        "REVENUECAT_WEBHOOK_SECRET": SECRETS.revenuecat_webhook_secret or "",
        "KIT_WEBHOOK_SECRET": ",".join(SECRETS.kit_webhook_secrets),
        "EVENTS_API_KEY": SECRETS.events_api_key or "",
    }


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""

    def encode(self, port: int) -> bytes:
        """The raw HTTP/1.1 request (keep-alive) the load generator writes."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if self.method != "GET":
            lines += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def email_of(index: int) -> str:
    return f"bench.user{index}@example.com"


def user_id_of(index: int) -> str:
    """A stable first-party user id per index (the consumer benchmark seeds the same)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-user-{index}"))


def variant_of(index: int) -> str:
    return VARIANTS[index % len(VARIANTS)]


def kit_event(serial: int, user: int, created: datetime) -> dict[str, Any]:
    activated = serial % 3 != 2
    return {
        "id": f"bench-kit-{uuid.uuid4()}",
        "type": "subscriber.activated" if activated else "subscriber.unsubscribed",
        "created": rfc3339(created),
        "data": {
            "subscriber": {
                "id": 1_000_000 + user,
                "first_name": f"User{user}",
                "email_address": email_of(user),
                "state": "active" if activated else "cancelled",
                "created_at": "2024-01-01T00:00:00Z",
                "fields": {"plan": "free", "source": "landing"},
            }
        },
    }


def impression_item(serial: int, user: int, at: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "impression",
        "user_id": user_id_of(user),
        "experiment": EXPERIMENT,
        "variant": variant_of(user),
        "occurred_at": rfc3339(at),
        "session_identifier": f"s-{user}-{serial // 20}",
        "page_url": "https://example.com/checkout",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        "country_code": "US",
        "device_type": "desktop" if serial % 2 else "mobile",
        "connection_type": "wifi",
        "utm_source": "newsletter",
        "scroll_depth_percent": serial % 101,
        "time_on_page": 5 + serial % 300,
    }


def healthz(serial: int) -> Request:
    return Request("GET", "/healthz", {})


def kit_delivery(serial: int) -> Request:
    now = time.time()
    base = datetime.fromtimestamp(now, UTC)
    events = [
        kit_event(i, (serial * KIT_EVENTS_PER_DELIVERY + i) % 5000, base + timedelta(seconds=i))
        for i in range(KIT_EVENTS_PER_DELIVERY)
    ]
    body = orjson.dumps({"delivery_id": serial, "events": events})
    signature = sign_timestamped(SECRETS.kit_webhook_secrets, int(now), body)
    return Request("POST", "/webhooks/kit", {"X-Kit-Signature": signature}, body)


def events_batch(serial: int) -> Request:
    at = datetime.now(UTC)
    items = [
        impression_item(i, (serial * EVENTS_PER_BATCH + i) % 5000, at)
        for i in range(EVENTS_PER_BATCH)
    ]
    body = orjson.dumps({"events": items})
    return Request("POST", "/events", {"Authorization": f"Bearer {SECRETS.events_api_key}"}, body)


def revenuecat_event(serial: int) -> Request:
    sample = revenuecat_sample(SECRETS)  # fresh event id, signed now
    return Request("POST", sample.path, sample.headers, sample.body)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    build: Callable[[int], Request]
    records_per_request: int
    expected_status: int


SCENARIOS = (
    Scenario("GET /healthz", healthz, 0, 200),
    Scenario("POST /webhooks/kit", kit_delivery, KIT_EVENTS_PER_DELIVERY, 200),
    Scenario("POST /events", events_batch, EVENTS_PER_BATCH, 202),
    Scenario("POST /webhooks/revenuecat", revenuecat_event, 1, 200),
)
