"""RevenueCat webhooks (docs/contract.md §4.1): one ``event`` per request.

Verification: the ``Authorization`` header must equal ``REVENUECAT_AUTHORIZATION``; when
``REVENUECAT_WEBHOOK_SECRET`` is set, ``X-RevenueCat-Webhook-Signature: t=..,v1=..`` must
be an HMAC-SHA256 of ``"{t}.{raw body}"`` within the timestamp tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import times
from contract.records import Record, cloudevent
from contract.topics import SOURCE_REVENUECAT
from core.settings import Settings
from ingest import fields
from ingest.endpoint import Endpoint, Head, Incoming, Param, configured_signing
from ingest.errors import BadCredentials, BadRequest
from ingest.limits import EndpointLimits, MiB
from ingest.verify import (
    Signing,
    equal,
    header_bytes,
    require_header,
    signed_recently,
    verify_timestamped,
)

SIGNATURE_HEADER = "X-RevenueCat-Webhook-Signature"


def check_authorization(headers: Mapping[str, str], *, authorization: str) -> None:
    given = require_header(headers, "Authorization")
    if not equal(header_bytes(given), authorization.encode()):
        raise BadCredentials("Authorization does not match")


@dataclass(frozen=True, slots=True)
class Credentials:
    authorization: str  # REVENUECAT_AUTHORIZATION
    signing: Signing | None  # REVENUECAT_WEBHOOK_SECRET, when the HMAC is on


def configured(settings: Settings) -> Credentials | None:
    if settings.revenuecat_authorization is None:
        return None
    return Credentials(
        settings.revenuecat_authorization,
        configured_signing(settings, settings.revenuecat_webhook_secret),
    )


def verify(headers: Mapping[str, str], raw: bytes, credentials: Credentials, *, now: float) -> None:
    check_authorization(headers, authorization=credentials.authorization)
    if credentials.signing is not None:
        verify_timestamped(headers, SIGNATURE_HEADER, raw, credentials.signing, now=now)


def partition_key(event: dict[str, Any]) -> str:
    """The original app user id, else the app user id; a TRANSFER has neither and uses the
    first id it was transferred from."""
    for key in ("original_app_user_id", "app_user_id"):
        value = fields.text_or_none(event.get(key))
        if value is not None:
            return value
    moved = event.get("transferred_from")
    if isinstance(moved, list) and moved and fields.text_or_none(moved[0]) is not None:
        return str(moved[0])
    raise BadRequest("event.app_user_id: is required (or event.transferred_from for TRANSFER)")


# What build_records requires; the other fields of RevenueCat's event are passed on as sent.
EVENT = fields.obj(
    {"id": fields.TEXT, "type": fields.TEXT},
    anyOf=[
        fields.obj({"original_app_user_id": fields.NON_BLANK}),
        fields.obj({"app_user_id": fields.NON_BLANK}),
        fields.obj(
            {
                "transferred_from": {
                    "type": "array",
                    "minItems": 1,
                    "prefixItems": [fields.NON_BLANK],
                }
            }
        ),
    ],
    description="One RevenueCat event; its partition key is original_app_user_id, else "
    "app_user_id, else (TRANSFER) transferred_from[0]. Other fields are published as sent.",
)
BODY = fields.obj({"event": EVENT})


def build_records(body: dict[str, Any], received_at: str) -> list[Record]:
    event = fields.require_object(body.get("event"), "event")
    event_id = fields.require_text(event.get("id"), "event.id")
    event_type = fields.require_text(event.get("type"), "event.type")
    return [
        cloudevent(
            source=SOURCE_REVENUECAT,
            event_id=event_id,
            event_type=f"revenuecat.{event_type}",
            time=times.first(
                times.from_epoch(event.get("event_timestamp_ms"), scale=1000.0),
                default=received_at,
            ),
            partition_key=partition_key(event),
            value=fields.dumps(event),
            received_at=received_at,
        )
    ]


def authorize(credentials: Credentials, head: Head) -> None:
    """``Authorization``, and when HMAC is on, a well-formed recent signature header."""
    check_authorization(head.headers, authorization=credentials.authorization)
    if credentials.signing is not None:
        signed_recently(
            head.headers,
            SIGNATURE_HEADER,
            now=head.now,
            tolerance_s=credentials.signing.tolerance_s,
        )


def accept(credentials: Credentials, incoming: Incoming) -> list[Record]:
    verify(incoming.headers, incoming.raw, credentials, now=incoming.now)
    return build_records(fields.parse_object(incoming.raw), incoming.received_at)


ENDPOINT = Endpoint(
    name="revenuecat",
    path="/webhooks/revenuecat",
    summary="RevenueCat webhook: one event, published to ingest.revenuecat.v1",
    security="Authorization header equal to REVENUECAT_AUTHORIZATION; optional "
    "X-RevenueCat-Webhook-Signature t=..,v1=.. (HMAC-SHA256 of '{t}.{body}')",
    configured=configured,
    accept=accept,
    body=BODY,
    authorize=authorize,
    params=(
        Param(
            SIGNATURE_HEADER,
            "t=<unix s>,v1=<hex HMAC-SHA256 of '{t}.{raw body}'>, t within "
            "SIGNATURE_TOLERANCE_S; required when REVENUECAT_WEBHOOK_SECRET is set",
            required=False,
        ),
    ),
    scheme="revenuecatAuthorization",
    limits=EndpointLimits(max_body_bytes=MiB, body_timeout_s=10.0),
)
