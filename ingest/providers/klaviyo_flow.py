"""Klaviyo flow-webhook action (docs/contract.md §4.3): the body is the JSON template documented in
docs/topics.md, one profile per request.

Klaviyo does not sign flow webhooks, so the secret is the ``{token}`` path segment, compared
in constant time with ``KLAVIYO_FLOW_TOKEN``.
"""

from __future__ import annotations

from typing import Any

from contract import times
from contract.records import Record, cloudevent
from contract.topics import SOURCE_KLAVIYO
from ingest import fields
from ingest.endpoint import Endpoint, Incoming, Param, path_token
from ingest.limits import EndpointLimits, MiB
from ingest.verify import check_path_token

EVENT_TYPE = "klaviyo.flow.profile"
# What build_records requires; the rest of the template (docs/topics.md) is published as sent.
BODY = fields.obj(
    {"event_id": fields.ID, "profile": fields.obj({"id": fields.TEXT})},
    description="The flow-webhook template of docs/topics.md; occurred_at is read leniently.",
)


def build_records(
    body: dict[str, Any], received_at: str, *, raw: bytes | None = None
) -> list[Record]:
    """One record whose value is the whole posted body (``raw`` when given, so the bytes
    published are exactly the bytes received, each U+0000 replaced as :func:`fields.parse`
    does)."""
    event_id = fields.require_id(body.get("event_id"), "event_id")
    profile = fields.require_object(body.get("profile"), "profile")
    profile_id = fields.require_text(profile.get("id"), "profile.id")
    return [
        cloudevent(
            source=SOURCE_KLAVIYO,
            event_id=event_id,
            event_type=EVENT_TYPE,
            time=times.first(times.lenient(body.get("occurred_at")), default=received_at),
            partition_key=profile_id,
            value=raw if raw is not None else fields.dumps(body),
            received_at=received_at,
        )
    ]


def accept(token: str, incoming: Incoming) -> list[Record]:
    check_path_token(incoming.params, token)
    parsed = fields.parse(incoming.raw)
    return build_records(parsed.body, incoming.received_at, raw=parsed.raw)


ENDPOINT = Endpoint(
    name="klaviyo_flow",
    path="/webhooks/klaviyo/flow/{token}",
    summary="Klaviyo flow-webhook action: one profile, published to ingest.klaviyo.v1",
    security="{token} path segment equal to KLAVIYO_FLOW_TOKEN",
    configured=lambda s: s.klaviyo_flow_token,
    accept=accept,
    body=BODY,
    authorize=path_token,
    params=(Param("token", "equal to KLAVIYO_FLOW_TOKEN", location="path"),),
    limits=EndpointLimits(max_body_bytes=MiB, body_timeout_s=10.0),
)
