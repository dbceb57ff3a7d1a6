"""Kit (formerly ConvertKit) webhooks (docs/contract.md §4.4): a batch of 1..100 events per request.

Verification: ``X-Kit-Signature: t=..,v1=..[,v1=..]`` where each ``v1`` is an HMAC-SHA256
of ``"{t}.{raw body}"``; a request is genuine when any ``v1`` matches any configured secret,
so secrets can be rotated without downtime.

Every event of a genuine delivery is published, whatever its type: Kit does not retry a 4xx,
so an event refused here would be lost. Subscriber events are keyed by the subscriber's
email; events about a tag, sequence, broadcast, post, custom field... carry no subscriber and
are keyed by that resource (:func:`partition_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract import times
from contract.keys import email_key
from contract.records import Record, cloudevent
from contract.topics import SOURCE_KIT
from ingest import fields
from ingest.endpoint import Endpoint, Head, Incoming, Param, configured_signing
from ingest.limits import EndpointLimits, MiB
from ingest.verify import Signing, signed_recently, verify_timestamped

SIGNATURE_HEADER = "X-Kit-Signature"
MAX_EVENTS = 100


def verify(headers: Mapping[str, str], raw: bytes, signing: Signing, *, now: float) -> None:
    verify_timestamped(headers, SIGNATURE_HEADER, raw, signing, now=now)


def subscriber_email(data: Any) -> str | None:
    """The key of ``subscriber.email_address`` of an event's ``data`` (trimmed, case-folded:
    :func:`contract.keys.email_key`), when it has one a key can hold."""
    email = fields.text_or_none(fields.dig(data, "subscriber", "email_address"))
    if email is None or len(email) > fields.MAX_TEXT:
        return None
    return email_key(email)


def resource_key(data: Any) -> str | None:
    """``<name>:<id>`` of the first object in ``data`` that has an id (``tag:12``,
    ``sequence:7``, ``subscriber:42`` for a subscriber without an email)."""
    if not isinstance(data, dict):
        return None
    for name, resource in data.items():
        raw_id = resource.get("id") if isinstance(resource, dict) else None
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str):
            continue
        key = f"{name}:{raw_id}"
        if str(raw_id).strip() and len(key) <= fields.MAX_TEXT:
            return key
    return None


def partition_key(data: Any, event_id: str) -> str:
    """The subscriber's lower-cased email, so every event of one person shares a partition;
    else the resource the event is about; else the event's own id, which spreads such events
    evenly (docs/topics.md, "Kit record keys")."""
    return subscriber_email(data) or resource_key(data) or event_id


# What build_records requires of a delivery; the rest of each event (its data: a subscriber,
# a tag, a purchase...) is passed on as sent.
EVENT = fields.obj({"id": fields.ID, "type": fields.TEXT})
BODY = fields.obj({"events": fields.array(EVENT, minimum=1, maximum=MAX_EVENTS)})


def build_records(body: dict[str, Any], received_at: str) -> list[Record]:
    events = fields.require_list(body.get("events"), "events", minimum=1, maximum=MAX_EVENTS)
    records = []
    for index, item in enumerate(events):
        path = f"events[{index}]"
        event = fields.require_object(item, path)
        event_id = fields.require_id(event.get("id"), f"{path}.id")
        event_type = fields.require_text(event.get("type"), f"{path}.type")
        records.append(
            cloudevent(
                source=SOURCE_KIT,
                event_id=event_id,
                event_type=f"kit.{event_type}",
                time=times.first(times.lenient(event.get("created")), default=received_at),
                partition_key=partition_key(event.get("data"), event_id),
                value=fields.dumps(event),
                received_at=received_at,
            )
        )
    return records


def authorize(signing: Signing, head: Head) -> None:
    """The signature header is present, well formed and recent (its HMAC needs the body)."""
    signed_recently(head.headers, SIGNATURE_HEADER, now=head.now, tolerance_s=signing.tolerance_s)


def accept(signing: Signing, incoming: Incoming) -> list[Record]:
    verify(incoming.headers, incoming.raw, signing, now=incoming.now)
    return build_records(fields.parse_object(incoming.raw), incoming.received_at)


ENDPOINT = Endpoint(
    name="kit",
    path="/webhooks/kit",
    summary="Kit webhook: a batch of 1..100 events, one record each on ingest.kit.v1",
    security="X-Kit-Signature t=..,v1=..[,v1=..] (HMAC-SHA256 of '{t}.{body}', any "
    "configured KIT_WEBHOOK_SECRET)",
    configured=lambda s: configured_signing(s, *s.kit_webhook_secrets),
    accept=accept,
    body=BODY,
    authorize=authorize,
    params=(
        Param(
            SIGNATURE_HEADER,
            "t=<unix s>,v1=<hex>[,v1=<hex>...]: each v1 an HMAC-SHA256 of '{t}.{raw body}' "
            "with a KIT_WEBHOOK_SECRET, t within SIGNATURE_TOLERANCE_S",
        ),
    ),
    limits=EndpointLimits(share=0.25, max_body_bytes=MiB, body_timeout_s=10.0),
)
