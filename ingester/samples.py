"""``ingester send-sample``: post a realistic, correctly signed request to a running ingest.

Every call uses fresh ids and timestamps. The sample person is the same across providers
(docs/topics.md): email ``sample@example.com``, first-party user ``SAMPLE_USER_ID``,
RevenueCat id ``u_rc_sample_1``, Klaviyo profile ``SAMPLE_KLAVIYO_PROFILE_ID`` with external
id ``user_sample_1``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import orjson

from contract.records import rfc3339
from core.errors import CommandError
from core.settings import DEV_ENV_FILE, MissingSetting, Settings, missing_hint
from ingest.providers import klaviyo
from ingest.verify import sign_timestamped

SAMPLE_EMAIL = "sample@example.com"
SAMPLE_USER_ID = "5a3b0c1e-8f2d-4c6a-9b7e-0d1f2a3b4c5d"
SAMPLE_EXPERIMENT = "checkout-button"
SAMPLE_VARIANTS = ("control", "green")
SAMPLE_VARIANT = "green"  # the sample user's assignment
SAMPLE_REVENUECAT_ID = "u_rc_sample_1"
SAMPLE_KLAVIYO_PROFILE_ID = "01HSAMPLEPR0F11E000000000A"
SAMPLE_KLAVIYO_EXTERNAL_ID = "user_sample_1"
SAMPLE_KIT_SUBSCRIBER_ID = 3141592


@dataclass(frozen=True, slots=True)
class Sample:
    path: str
    body: bytes
    headers: dict[str, str]


def _now() -> tuple[float, str]:
    now = time.time()
    return now, rfc3339(datetime.fromtimestamp(now, UTC))


def _require(value: str | None, variable: str) -> str:
    if not value:
        raise MissingSetting(variable)
    return value


def revenuecat_sample(settings: Settings) -> Sample:
    authorization = _require(settings.revenuecat_authorization, "REVENUECAT_AUTHORIZATION")
    now, _ = _now()
    now_ms = int(now * 1000)
    event = {
        "id": str(uuid.uuid4()).upper(),
        "type": "INITIAL_PURCHASE",
        "app_id": "app_sample",
        "app_user_id": SAMPLE_REVENUECAT_ID,
        "original_app_user_id": SAMPLE_REVENUECAT_ID,
        "aliases": [SAMPLE_REVENUECAT_ID],
        "event_timestamp_ms": now_ms,
        "purchased_at_ms": now_ms,
        "expiration_at_ms": now_ms + 30 * 24 * 3600 * 1000,
        "environment": "SANDBOX" if settings.environment == "dev" else "PRODUCTION",
        "store": "APP_STORE",
        "product_id": "premium_monthly",
        "period_type": "NORMAL",
        "entitlement_ids": ["premium"],
        "presented_offering_id": "default",
        "transaction_id": str(now_ms),
        "original_transaction_id": str(now_ms),
        "price": 9.99,
        "currency": "USD",
        "price_in_purchased_currency": 9.99,
        "country_code": "US",
        "takehome_percentage": 0.85,
        "is_family_share": False,
        "subscriber_attributes": {
            "$email": {"value": SAMPLE_EMAIL, "updated_at_ms": now_ms},
            "$displayName": {"value": "Sample User", "updated_at_ms": now_ms},
            "environment": {"value": settings.environment, "updated_at_ms": now_ms},
        },
    }
    body = orjson.dumps({"api_version": "1.0", "event": event})
    headers = {"Authorization": authorization}
    if settings.revenuecat_webhook_secret:
        headers["X-RevenueCat-Webhook-Signature"] = sign_timestamped(
            (settings.revenuecat_webhook_secret,), int(now), body
        )
    return Sample("/webhooks/revenuecat", body, headers)


def klaviyo_sample(settings: Settings) -> Sample:
    secret = _require(settings.klaviyo_webhook_secret, "KLAVIYO_WEBHOOK_SECRET")
    now, now_text = _now()
    webhook_id = "01HSAMPLEWEBH00K0000000000"
    element = {
        "external_id": uuid.uuid4().hex,
        "topic": "event:klaviyo.subscribed_to_email_marketing",
        "payload": {
            "data": {
                "type": "event",
                "id": uuid.uuid4().hex[:26].upper(),
                "attributes": {
                    "timestamp": int(now),
                    "datetime": datetime.fromtimestamp(int(now), UTC).isoformat(),
                    "uuid": str(uuid.uuid4()),
                    "event_properties": {"List": "Newsletter", "Method": "API"},
                },
                "relationships": {
                    "profile": {"data": {"type": "profile", "id": SAMPLE_KLAVIYO_PROFILE_ID}},
                    "metric": {"data": {"type": "metric", "id": "SUBSCRIBED"}},
                },
            }
        },
    }
    meta = {"klaviyo_account_id": "SAMPLE", "klaviyo_webhook_id": webhook_id, "timestamp": now_text}
    body = orjson.dumps({"data": [element], "meta": meta})
    sent = formatdate(now, usegmt=True)
    headers = {
        "Klaviyo-Webhook-Id": webhook_id,
        "Klaviyo-Timestamp": sent,
        "Klaviyo-Signature": klaviyo.signature(secret, body, sent),
    }
    return Sample("/webhooks/klaviyo", body, headers)


def klaviyo_flow_sample(settings: Settings) -> Sample:
    token = _require(settings.klaviyo_flow_token, "KLAVIYO_FLOW_TOKEN")
    _, now_text = _now()
    body = {
        "event_id": f"{SAMPLE_KLAVIYO_PROFILE_ID}:{uuid.uuid4().hex}",
        "occurred_at": now_text,
        "profile": {
            "id": SAMPLE_KLAVIYO_PROFILE_ID,
            "email": SAMPLE_EMAIL,
            "phone_number": "+15005550006",
            "first_name": "Sample",
            "last_name": "User",
            "external_id": SAMPLE_KLAVIYO_EXTERNAL_ID,
            "timezone": "America/Los_Angeles",
            "properties": {"environment": settings.environment},
        },
    }
    return Sample(f"/webhooks/klaviyo/flow/{token}", orjson.dumps(body), {})


def kit_sample(settings: Settings) -> Sample:
    if not settings.kit_webhook_secrets:
        raise MissingSetting("KIT_WEBHOOK_SECRET")
    now, now_text = _now()
    event = {
        "id": str(uuid.uuid4()),
        "type": "subscriber.activated",
        "created": now_text,
        "data": {
            "subscriber": {
                "id": SAMPLE_KIT_SUBSCRIBER_ID,
                "first_name": "Sample",
                "email_address": SAMPLE_EMAIL,
                "state": "active",
                "created_at": now_text,
                "fields": {},
            }
        },
    }
    body = orjson.dumps({"delivery_id": int(now * 1000), "events": [event]})
    signature = sign_timestamped(settings.kit_webhook_secrets[:1], int(now), body)
    return Sample("/webhooks/kit", body, {"X-Kit-Signature": signature})


def events_sample(settings: Settings) -> Sample:
    key = _require(settings.events_api_key, "EVENTS_API_KEY")
    _, now_text = _now()
    common: dict[str, Any] = {
        "user_id": SAMPLE_USER_ID,
        "experiment": SAMPLE_EXPERIMENT,
        "variant": SAMPLE_VARIANT,
        "occurred_at": now_text,
        "session_identifier": uuid.uuid4().hex,
        "country_code": "US",
        "device_type": "desktop",
        "utm_source": "newsletter",
    }
    impression = {
        **common,
        "id": str(uuid.uuid4()),
        "type": "impression",
        "page_url": "https://example.com/checkout",
        "connection_type": "wifi",
        "scroll_depth_percent": 80,
        "time_on_page": 42,
    }
    conversion = {
        **common,
        "id": str(uuid.uuid4()),
        "type": "conversion",
        "conversion_type": "purchase",
        "conversion_value": 9.99,
    }
    body = orjson.dumps({"events": [impression, conversion]})
    return Sample("/events", body, {"Authorization": f"Bearer {key}"})


BUILDERS: dict[str, Callable[[Settings], Sample]] = {
    "revenuecat": revenuecat_sample,
    "klaviyo": klaviyo_sample,
    "klaviyo-flow": klaviyo_flow_sample,
    "kit": kit_sample,
    "events": events_sample,
}


PROVIDERS = tuple(BUILDERS)


async def send_sample(
    settings: Settings, provider: str, url: str, *, env_file: Path | None = DEV_ENV_FILE
) -> int:
    """Post one sample; print ``<status> <response body>``; 0 on 2xx, else 1. A sample that
    cannot be signed or sent raises :class:`CommandError`. ``env_file`` is where the dev
    secrets were looked for (named in the hint)."""
    import httpx  # only this verb needs the HTTP client

    builder = BUILDERS.get(provider)
    if builder is None:
        raise CommandError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    try:
        sample = builder(settings)
    except MissingSetting as exc:
        hint = missing_hint(exc.variable, env_file)
        raise CommandError(f"cannot sign a {provider} sample: {exc} ({hint})") from exc
    target = url.rstrip("/") + sample.path
    headers = {"Content-Type": "application/json", **sample.headers}
    try:
        async with httpx.AsyncClient(timeout=settings.produce_timeout_s + 10) as client:
            response = await client.post(target, content=sample.body, headers=headers)
    except httpx.HTTPError as exc:
        shown = url.rstrip("/") + sample.path.split("/flow/")[0]
        raise CommandError(f"cannot reach {shown}: {type(exc).__name__}: {exc}") from exc
    print(f"{response.status_code} {' '.join(response.text.split())}")
    return 0 if 200 <= response.status_code < 300 else 1
