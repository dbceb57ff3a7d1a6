"""Each endpoint's body schema in /openapi.json says exactly what its ``accept`` takes.

Bodies are generated from the published document by schemathesis (the generator clients'
fuzzers use): every schema-valid body, correctly signed, is accepted and cut into records;
every body the schema refuses is refused (400, or 401 for a webhook id that cannot match its
header). The other checks (signatures, tokens) are the headers' and are exercised by the
HTTP tests; here each request carries valid ones, so only the body decides.
"""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from contract.fields import dig
from ingest import openapi
from ingest.clock import received_at
from ingest.endpoint import Endpoint, Incoming
from ingest.errors import BadRequest, WebhookIdMismatch
from ingest.providers import klaviyo
from ingest.registry import ENDPOINTS
from ingest.verify import sign_timestamped
from tests.support import CONFIGURED

SETTINGS = CONFIGURED
DOCUMENT = openapi.document(ENDPOINTS, "test")
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
# Bounded so the whole module takes seconds; hypothesis's database keeps what failed once.
POSITIVE_EXAMPLES, NEGATIVE_EXAMPLES = 60, 30
LEGACY_EVENT = "subscriber.subscriber_activate"
CONSENT = "event:klaviyo.subscribed_to_sms_marketing"
HEADER_VALUE = re.compile(klaviyo.WEBHOOK_ID_PATTERN)


def validator(endpoint: Endpoint[Any]) -> Any:
    """The body schema with the shared schemas it refers to, formats asserted."""
    root = {**endpoint.body, "components": {"schemas": dict(openapi.COMPONENT_SCHEMAS)}}
    return jsonschema_rs.validator_for(root, validate_formats=True)


def incoming(endpoint: Endpoint[Any], raw: bytes, body: Any, params: dict[str, str]) -> Incoming:
    """The request as ``accept`` sees it, with valid credentials for ``raw``."""
    now = time.time()
    headers: dict[str, str] = {}
    if endpoint.name == "revenuecat":
        headers["authorization"] = "Bearer rc"
        headers["x-revenuecat-webhook-signature"] = sign_timestamped(("rc-hmac",), int(now), raw)
    elif endpoint.name == "kit":
        headers["x-kit-signature"] = sign_timestamped(("kit",), int(now), raw)
    elif endpoint.name == "klaviyo":
        claimed = dig(body, "meta", "klaviyo_webhook_id")
        sent = formatdate(now, usegmt=True)
        # The header carries the claimed id when an HTTP header can (visible ASCII, as the
        # schema's pattern says); a claim no header can carry is refused as a mismatch.
        sendable = isinstance(claimed, str) and HEADER_VALUE.fullmatch(claimed) is not None
        headers["klaviyo-webhook-id"] = claimed if sendable else "wh"
        headers["klaviyo-timestamp"] = sent
        headers["klaviyo-signature"] = klaviyo.signature("kl", raw, sent)
    elif endpoint.name == "events":
        headers["authorization"] = "Bearer ev"
    return Incoming(headers, params, raw, now, received_at(now))


def _params(endpoint: Endpoint[Any], generated: dict[str, Any] | None) -> dict[str, str]:
    params = {}
    if "{token}" in endpoint.path:
        params["token"] = "flow" if endpoint.name == "klaviyo_flow" else "legacy"
    if "{event_name}" in endpoint.path:
        params["event_name"] = str((generated or {}).get("event_name", LEGACY_EVENT))
    return params


def _sent(body: Any) -> bytes:
    # What a client sends: schemathesis's transport (requests) writes json.dumps' text, or
    # raw bytes as they are; a body left out arrives as no bytes at all.
    if isinstance(body, bytes):
        return body
    if isinstance(body, NotSet):
        return b""
    return json.dumps(body).encode()


def _valid(validate: Any, raw: bytes) -> bool:
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return bool(validate.is_valid(body))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_schema_valid_body_is_accepted(endpoint: Endpoint[Any]) -> None:
    config = endpoint.configured(SETTINGS)
    strategy = SCHEMA[endpoint.path]["POST"].as_strategy(GenerationMode.POSITIVE)

    @settings(
        max_examples=POSITIVE_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        raw = _sent(case.body)
        request = incoming(endpoint, raw, case.body, _params(endpoint, case.path_parameters))
        records = endpoint.accept(config, request)
        assert records or endpoint.name == "klaviyo"  # a Klaviyo batch may be empty

    check()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_body_the_schema_refuses_is_refused(endpoint: Endpoint[Any]) -> None:
    config = endpoint.configured(SETTINGS)
    valid = validator(endpoint)
    strategy = SCHEMA[endpoint.path]["POST"].as_strategy(GenerationMode.NEGATIVE)

    @settings(
        max_examples=NEGATIVE_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        raw = _sent(case.body)
        assume(not _valid(valid, raw))
        request = incoming(endpoint, raw, case.body, _params(endpoint, None))
        with pytest.raises((BadRequest, WebhookIdMismatch)):
            endpoint.accept(config, request)

    check()


@pytest.mark.parametrize(
    ("endpoint_name", "body"),
    [
        pytest.param("events", {"events": []}, id="no events"),
        pytest.param("events", {"events": [{}]}, id="an empty item"),
        pytest.param("kit", {"events": [{"id": 1.5, "type": "t"}]}, id="kit id not integral"),
        pytest.param("revenuecat", {"event": {"id": "e", "type": "T"}}, id="rc without a user"),
        pytest.param(
            "klaviyo",
            {
                "data": [
                    {"external_id": "x", "topic": "event:klaviyo.subscribed_to_sms_marketing"}
                ],
                "meta": {"klaviyo_webhook_id": "wh"},
            },
            id="consent without a profile",
        ),
    ],
)
def test_the_schema_and_the_code_refuse_alike(endpoint_name: str, body: Any) -> None:
    (endpoint,) = [e for e in ENDPOINTS if e.name == endpoint_name]
    raw = _sent(body)

    assert not validator(endpoint).is_valid(body)
    with pytest.raises(BadRequest):
        endpoint.accept(
            endpoint.configured(SETTINGS), incoming(endpoint, raw, body, _params(endpoint, None))
        )
