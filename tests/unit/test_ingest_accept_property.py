"""Property: whatever the body and headers, an endpoint either builds records or rejects the
request with one of its own errors (4xx) -- never anything that would become a 500."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.records import Record
from core.settings import Settings
from ingest.endpoint import Endpoint, Incoming
from ingest.errors import IngestError
from ingest.providers import klaviyo
from ingest.registry import ENDPOINTS
from ingest.verify import sign_timestamped

SETTINGS = Settings(
    revenuecat_authorization="Bearer rc",
    revenuecat_webhook_secret="rc-hmac",
    klaviyo_webhook_secret="kl",
    klaviyo_flow_token="flow",
    kit_webhook_secrets=("kit-a", "kit-b"),
    kit_legacy_token="legacy",
    events_api_key="ev",
)

# Field names the providers look at, so generated bodies reach deep into the builders.
KNOWN = (
    *("event", "id", "type", "app_user_id", "original_app_user_id", "transferred_from"),
    *("event_timestamp_ms", "data", "meta", "klaviyo_webhook_id", "timestamp", "external_id"),
    *("topic", "payload", "attributes", "datetime", "relationships", "profile", "events"),
    *("event_id", "occurred_at", "created", "subscriber", "email_address", "state", "user_id"),
    *("experiment", "variant", "scroll_depth_percent", "conversion_value", "country_code"),
    *("device_type", "connection_type", "metadata", "city", "bounce", "time_on_page"),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["impression", "conversion", "2026-01-01T00:00:00Z", "0b5e7a52-6d1f-4c8e-9a43-2f1d7c3e9b10"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN) | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=25,
)
# The stdlib encoder, so integers beyond 64 bits reach the decoder too.
json_bodies = json_values.map(lambda v: json.dumps(v).encode())
bodies = json_bodies | st.binary(max_size=200)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
header_names = st.sampled_from(
    [
        "authorization",
        "x-revenuecat-webhook-signature",
        "x-kit-signature",
        "klaviyo-webhook-id",
        "klaviyo-timestamp",
        "klaviyo-signature",
        "x-other",
    ]
)
random_headers = st.dictionaries(header_names, header_values, max_size=4)


def signed_headers(endpoint: str, raw: bytes, now: float) -> dict[str, str]:
    """Correct credentials for ``raw``, so the property also covers the code after them."""
    t = int(now)
    if endpoint == "revenuecat":
        return {
            "authorization": "Bearer rc",
            "x-revenuecat-webhook-signature": sign_timestamped(("rc-hmac",), t, raw),
        }
    if endpoint == "klaviyo":
        sent = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))
        return {
            "klaviyo-webhook-id": "wh",
            "klaviyo-timestamp": sent,
            "klaviyo-signature": klaviyo.signature("kl", raw, sent),
        }
    if endpoint == "kit":
        return {"x-kit-signature": sign_timestamped(("kit-b",), t, raw)}
    if endpoint == "events":
        return {"authorization": "Bearer ev"}
    return {}


PARAMS: dict[str, dict[str, str]] = {
    "klaviyo_flow": {"token": "flow"},
    "kit_legacy": {"token": "legacy", "event_name": "subscriber.subscriber_activate"},
}


def accept_or_reject(endpoint: Endpoint, incoming: Incoming) -> list[Record] | IngestError:
    try:
        return endpoint.accept(SETTINGS, incoming)
    except IngestError as exc:
        assert 400 <= exc.status < 500
        return exc


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=bodies,
    headers=random_headers,
    signed=st.booleans(),
    event_name=st.text(max_size=20),
)
def test_any_request_is_accepted_or_rejected_cleanly(
    endpoint: Endpoint, raw: bytes, headers: dict[str, str], signed: bool, event_name: str
) -> None:
    now = time.time()
    if signed:
        headers = {**headers, **signed_headers(endpoint.name, raw, now)}
    params = dict(PARAMS.get(endpoint.name, {}))
    if "event_name" in params and event_name:
        params["event_name"] = event_name
    outcome = accept_or_reject(
        endpoint, Incoming(headers, params, raw, now, "2026-01-01T00:00:00Z")
    )
    if isinstance(outcome, list):
        assert all(isinstance(r, Record) and r.key for r in outcome)
