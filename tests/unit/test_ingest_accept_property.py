"""Property: whatever the body and headers, an endpoint either builds records or rejects the
request with one of its own errors (4xx) -- never anything that would become a 500 -- and
what it accepts from a hostile but correctly signed body the consumers can apply."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.decode import RawRecord, decode
from contract.items import contains_nul
from contract.records import Record
from core.settings import Settings
from ingest import fields
from ingest.endpoint import Endpoint, Incoming
from ingest.errors import IngestError
from ingest.providers import klaviyo
from ingest.registry import ENDPOINTS
from ingest.verify import sign_timestamped
from tests.integration import ingest_harness as h

Path = tuple[str | int, ...]

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
            "klaviyo-webhook-id": "wh_test",
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


def accept_or_reject(endpoint: Endpoint[Any], incoming: Incoming) -> list[Record] | IngestError:
    config = endpoint.configured(SETTINGS)
    assert config is not None
    try:
        return endpoint.accept(config, incoming)
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
    endpoint: Endpoint[Any], raw: bytes, headers: dict[str, str], signed: bool, event_name: str
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


# Hostile bodies: a valid, correctly signed request of each endpoint with one field replaced
# by a value built to break something between the door and the database.
PLACEHOLDER = "__hostile_7f3a__"


def paths(*chosen: Path) -> list[Path]:
    return list(chosen)


TEMPLATES: dict[str, tuple[dict[str, Any], list[Path]]] = {
    "revenuecat": (
        {"api_version": "1.0", "event": h.revenuecat_event(transferred_from=["u_rc_0"])},
        paths(
            ("event",),
            *[("event", k) for k in ("id", "type", "app_user_id", "original_app_user_id")],
            *[("event", k) for k in ("event_timestamp_ms", "transferred_from", "aliases")],
            ("event", "subscriber_attributes", "$email", "updated_at_ms"),
            ("event", "price"),
        ),
    ),
    "klaviyo": (
        {**h.klaviyo_batch(h.klaviyo_element()), "meta": {"klaviyo_webhook_id": "wh_test", "x": 1}},
        paths(
            ("data", 0),
            ("data", 0, "external_id"),
            ("data", 0, "topic"),
            ("data", 0, "payload", "data", "attributes", "datetime"),
            ("data", 0, "payload", "data", "attributes", "timestamp"),
            ("data", 0, "payload", "data", "relationships", "profile", "data", "id"),
            ("meta", "x"),
        ),
    ),
    "klaviyo_flow": (
        h.flow_body(),
        paths(
            *[(k,) for k in ("event_id", "occurred_at", "profile")],
            *[("profile", k) for k in ("id", "email", "properties")],
            ("profile", "properties", "environment"),
        ),
    ),
    "kit": (
        {"delivery_id": 1, "events": [h.kit_event()]},
        paths(
            ("events", 0),
            *[("events", 0, k) for k in ("id", "type", "created", "data")],
            *[("events", 0, "data", "subscriber", k) for k in ("email_address", "id", "state")],
        ),
    ),
    "kit_legacy": (
        h.legacy_body(),
        paths(("subscriber",), *[("subscriber", k) for k in ("email_address", "id", "state")]),
    ),
    "events": (
        {"events": [h.app_event(metadata={"k": 1}, conversion_value=1)]},
        paths(
            ("events", 0),
            *[("events", 0, k) for k in ("id", "type", "user_id", "occurred_at", "metadata")],
            *[("events", 0, k) for k in ("conversion_value", "scroll_depth_percent")],
        ),
    ),
}


def nest(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


DIGIT_STRINGS = ["\u00b2", "\u0663\u0664", "9" * 400, "9" * 5000, " 1767225600 ", "-1", "0" * 20]
RAW_NUMBERS = ["9" * 400, "9" * 5000, "1e400", "-1e400", "NaN", "Infinity", "-Infinity"]
RAW_NUMBERS += ["18446744073709551616", "-9223372036854775809", "1e308", "-0", "0.0000001"]
hostile = st.one_of(
    st.sampled_from(DIGIT_STRINGS).map(json.dumps),
    st.sampled_from(RAW_NUMBERS),
    st.tuples(st.integers(200, 1100), st.sampled_from(["list", "object"])).map(
        lambda spec: nest(*spec)
    ),
    st.text(max_size=8).map(lambda t: json.dumps(t + "\x00" + t)),
    st.sampled_from(['{"\\u0000": 1}', '["\\u0000"]', '"\\\\u0000"', '"\\\\\\u0000"']),
    st.sampled_from(['"\\ud800"', '"a\\udc00b"', '{"\\udfff": 1}', '"\\ud800\\ud800"']),
    st.sampled_from(["[]", "{}", "true", "null", "1.5", '""', '" "', "[null]", "0"]),
    st.text(max_size=300).map(json.dumps),
    json_values.map(json.dumps),
)


def hostile_body(endpoint: str, path: Path, fragment: str, duplicate: bool) -> bytes:
    """The template with the value at ``path`` replaced by the JSON text ``fragment``; with
    ``duplicate``, the key is kept and repeated with the fragment (the last one wins)."""
    body, _ = TEMPLATES[endpoint]
    changed = copy.deepcopy(body)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    original = parent.get(path[-1]) if isinstance(parent, dict) else parent[path[-1]]
    parent[path[-1]] = PLACEHOLDER
    text = json.dumps(changed)
    if duplicate and isinstance(path[-1], str):
        fragment = f"{json.dumps(original)}, {json.dumps(path[-1])}: {fragment}"
    return text.replace(json.dumps(PLACEHOLDER), fragment).encode()


def assert_consumable(record: Record) -> None:
    """What the consumers would dead-letter for a reason the door can see never passes:
    the record decodes, its value encodes again, no string holds U+0000."""
    raw = RawRecord("t", 0, 0, record.key, record.value, record.headers)
    event = decode(raw)
    orjson.dumps(event.data)
    assert not contains_nul(event.data)
    assert all(b"\x00" not in value for _, value in record.headers)
    assert len(event.id) <= fields.MAX_TEXT


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fragment=hostile, duplicate=st.booleans())
def test_hostile_signed_bodies_are_accepted_consumably_or_refused(
    endpoint: Endpoint[Any], data: st.DataObject, fragment: str, duplicate: bool
) -> None:
    path = data.draw(st.sampled_from(TEMPLATES[endpoint.name][1]), label="path")
    raw = hostile_body(endpoint.name, path, fragment, duplicate)
    now = time.time()
    incoming = Incoming(
        signed_headers(endpoint.name, raw, now),
        PARAMS.get(endpoint.name, {}),
        raw,
        now,
        "2026-01-01T00:00:00.000Z",
    )
    outcome = accept_or_reject(endpoint, incoming)
    if isinstance(outcome, list):
        for record in outcome:
            assert_consumable(record)
    else:
        assert outcome.status == 400, outcome  # signed correctly: only the body is at fault


@pytest.mark.parametrize(
    ("endpoint", "path", "fragment"),
    [
        pytest.param("klaviyo_flow", ("occurred_at",), '"\\u00b2"', id="flow time superscript"),
        pytest.param("kit", ("events", 0, "created"), json.dumps("9" * 400), id="kit 400 digits"),
        pytest.param("klaviyo", ("meta", "timestamp"), json.dumps("9" * 5000), id="5000 digits"),
        pytest.param("klaviyo_flow", ("profile",), nest(300, "object"), id="flow 300 deep"),
        pytest.param("events", ("events", 0, "metadata"), nest(254, "object"), id="events deep"),
        pytest.param("kit", ("events", 0, "data", "subscriber", "id"), '"\\u0000"', id="kit NUL"),
        pytest.param("klaviyo_flow", ("profile", "email"), '"a\\u0000"', id="flow NUL"),
    ],
)
def test_known_500s_of_issue_11(endpoint: str, path: Path, fragment: str) -> None:
    [chosen] = [e for e in ENDPOINTS if e.name == endpoint]
    raw = hostile_body(endpoint, path, fragment, duplicate=False)
    now = time.time()
    incoming = Incoming(
        signed_headers(endpoint, raw, now), PARAMS.get(endpoint, {}), raw, now, "2026-01-01T00Z"
    )
    outcome = accept_or_reject(chosen, incoming)
    if isinstance(outcome, list):
        for record in outcome:
            assert_consumable(record)
