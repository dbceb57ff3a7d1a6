"""Klaviyo system webhooks (docs/contract.md §4.2): a batch of up to 1000 events per request.

Verification: ``Klaviyo-Signature`` is the lower-case hex HMAC-SHA256 of the raw body
followed by the ``Klaviyo-Timestamp`` header value exactly as received; that timestamp (an
HTTP date) must be within the tolerance, and ``meta.klaviyo_webhook_id`` must equal the
``Klaviyo-Webhook-Id`` header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from contract import times
from contract.records import Record, cloudevent
from contract.topics import SOURCE_KLAVIYO
from ingest import fields
from ingest.endpoint import Endpoint, Head, Incoming, Param, configured_signing
from ingest.errors import BadRequest, WebhookIdMismatch
from ingest.limits import EndpointLimits
from ingest.verify import (
    Signing,
    check_hex_signature,
    check_timestamp,
    equal,
    header_bytes,
    hmac_sha256_hex,
    parse_http_date,
    require_header,
)

WEBHOOK_ID_HEADER = "Klaviyo-Webhook-Id"
TIMESTAMP_HEADER = "Klaviyo-Timestamp"
SIGNATURE_HEADER = "Klaviyo-Signature"
MAX_EVENTS = 1000
# Marketing-consent topics change a profile's notification settings, so the consumers need
# the profile; one without it could never apply (see consumers/handlers/klaviyo_events.py).
CONSENT_PATTERN = r"^event:klaviyo\.(?:un)?subscribed_to_[a-z]+_marketing$"
_CONSENT_TOPIC = re.compile(CONSENT_PATTERN[1:-1])
_PROFILE_PATH = "payload.data.relationships.profile.data.id"
# A webhook id that can equal a header value: printable ASCII, no blanks at either end.
WEBHOOK_ID_PATTERN = "^[!-~](?:[ -~]*[!-~])?$"

# What build_records (and check_webhook_id) require; the rest is published as sent.
EVENT = fields.obj(
    {"external_id": fields.TEXT, "topic": fields.TEXT},
    **{
        "if": {"properties": {"topic": {"type": "string", "pattern": CONSENT_PATTERN}}},
        "then": fields.nested(_PROFILE_PATH, fields.NON_BLANK),
    },
)
META = fields.obj(
    {
        "klaviyo_webhook_id": {
            "type": "string",
            "pattern": WEBHOOK_ID_PATTERN,
            "description": "equal to the Klaviyo-Webhook-Id header",
        }
    }
)
BODY = fields.obj({"data": fields.array(EVENT, minimum=0, maximum=MAX_EVENTS), "meta": META})


def signature(secret: str, raw: bytes, timestamp: str) -> str:
    """What Klaviyo sends in ``Klaviyo-Signature`` (used by ``send-sample`` and the tests)."""
    return hmac_sha256_hex(secret, raw + header_bytes(timestamp))


def signed_recently(headers: Mapping[str, str], *, now: float, tolerance_s: float) -> str:
    """The three headers are present and the timestamp is recent; returns the timestamp."""
    require_header(headers, WEBHOOK_ID_HEADER)
    sent = require_header(headers, TIMESTAMP_HEADER)
    require_header(headers, SIGNATURE_HEADER)
    check_timestamp(parse_http_date(sent, TIMESTAMP_HEADER), now, tolerance_s)
    return sent


def verify(headers: Mapping[str, str], raw: bytes, signing: Signing, *, now: float) -> str:
    """Check the signature and the timestamp; return the ``Klaviyo-Webhook-Id`` header, which
    :func:`check_webhook_id` compares with the body once it is parsed."""
    sent = signed_recently(headers, now=now, tolerance_s=signing.tolerance_s)
    webhook_id = require_header(headers, WEBHOOK_ID_HEADER)
    given = require_header(headers, SIGNATURE_HEADER)
    # The timestamp is signed exactly as received, so the raw header value is used, not
    # the stripped one.
    exact = headers.get(TIMESTAMP_HEADER.lower(), sent)
    check_hex_signature(
        (signature(key, raw, exact) for key in signing.secrets), (given,), SIGNATURE_HEADER
    )
    return webhook_id


def check_webhook_id(body: dict[str, Any], webhook_id: str) -> None:
    claimed = fields.dig(body, "meta", "klaviyo_webhook_id")
    if not isinstance(claimed, str) or not equal(claimed.encode(), webhook_id.encode()):
        raise WebhookIdMismatch()


def profile_id(element: dict[str, Any]) -> str | None:
    return fields.text_or_none(
        fields.dig(element, "payload", "data", "relationships", "profile", "data", "id")
    )


def event_time(element: dict[str, Any], body: dict[str, Any], received_at: str) -> str:
    """The event's own datetime, else its epoch timestamp, else when Klaviyo sent the batch."""
    attributes = fields.dig(element, "payload", "data", "attributes")
    return times.first(
        times.from_iso(fields.dig(attributes, "datetime")),
        times.from_epoch(fields.dig(attributes, "timestamp")),
        times.lenient(fields.dig(body, "meta", "timestamp")),
        default=received_at,
    )


def build_records(body: dict[str, Any], received_at: str) -> list[Record]:
    data = fields.require_list(body.get("data"), "data", minimum=0, maximum=MAX_EVENTS)
    records = []
    for index, item in enumerate(data):
        path = f"data[{index}]"
        element = fields.require_object(item, path)
        external_id = fields.require_text(element.get("external_id"), f"{path}.external_id")
        topic = fields.require_text(element.get("topic"), f"{path}.topic")
        profile = profile_id(element)
        if profile is None and _CONSENT_TOPIC.fullmatch(topic):
            raise BadRequest(f"{path}.{_PROFILE_PATH}: is required for a consent topic")
        records.append(
            cloudevent(
                source=SOURCE_KLAVIYO,
                event_id=external_id,
                event_type=f"klaviyo.{topic}",
                time=event_time(element, body, received_at),
                # An event without a profile (none of today's topics) still needs a key;
                # its own id spreads such events evenly.
                partition_key=profile or external_id,
                value=fields.dumps(element),
                received_at=received_at,
            )
        )
    return records


def authorize(signing: Signing, head: Head) -> None:
    """Everything but the signature itself, which covers the body."""
    signed_recently(head.headers, now=head.now, tolerance_s=signing.tolerance_s)


def accept(signing: Signing, incoming: Incoming) -> list[Record]:
    webhook_id = verify(incoming.headers, incoming.raw, signing, now=incoming.now)
    body = fields.parse_object(incoming.raw)
    check_webhook_id(body, webhook_id)
    return build_records(body, incoming.received_at)


ENDPOINT = Endpoint(
    name="klaviyo",
    path="/webhooks/klaviyo",
    summary="Klaviyo system webhook: a batch of events, one record each on ingest.klaviyo.v1",
    security="Klaviyo-Signature: hex HMAC-SHA256 of body + Klaviyo-Timestamp; "
    "Klaviyo-Webhook-Id equal to meta.klaviyo_webhook_id",
    configured=lambda s: configured_signing(s, s.klaviyo_webhook_secret),
    accept=accept,
    body=BODY,
    authorize=authorize,
    params=(
        Param(WEBHOOK_ID_HEADER, "equal to meta.klaviyo_webhook_id of the body"),
        Param(
            TIMESTAMP_HEADER,
            "an HTTP date (Thu, 04 Jan 2024 18:05:25 GMT) within SIGNATURE_TOLERANCE_S",
        ),
        Param(
            SIGNATURE_HEADER,
            "lower-case hex HMAC-SHA256 (KLAVIYO_WEBHOOK_SECRET) of the raw body followed by "
            "the Klaviyo-Timestamp value as sent",
        ),
    ),
    limits=EndpointLimits(share=0.25),
)
