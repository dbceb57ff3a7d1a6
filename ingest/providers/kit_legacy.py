"""Legacy Kit (ConvertKit v3) hooks (docs/contract.md §4.5): unsigned, one event per request.

The ``{token}`` path segment must equal ``KIT_LEGACY_TOKEN``; the ``{event_name}`` segment,
chosen when the hook was created at Kit, names the event (``subscriber.subscriber_activate``,
``purchase.purchase_create``, ``custom_field.field_created``...). Any event name is accepted:
the body is put under ``data`` with the shape of a webhooks 2.0 event, so one record format
serves both (:func:`event_data`).

Legacy hooks carry no event id, so one is derived from (event name, resource id, state, body
hash): a retried delivery of the same body gets the same id and is deduplicated by the
consumers.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from contract.records import Record, cloudevent
from contract.topics import SOURCE_KIT
from ingest import fields
from ingest.endpoint import Endpoint, Incoming, Param, path_token
from ingest.errors import BadRequest
from ingest.limits import EndpointLimits, MiB
from ingest.providers.kit import partition_key
from ingest.verify import check_path_token

# e.g. subscriber.subscriber_activate, subscriber.tag_add, purchase.purchase_create
EVENT_NAME_PATTERN = r"^[a-z0-9_]{1,64}(?:\.[a-z0-9_]{1,64}){0,3}$"
_EVENT_NAME = re.compile(EVENT_NAME_PATTERN[1:-1])
BODY = fields.obj({})  # any JSON object: the hook's resource, or the resource under its name


def event_data(event_name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as an event's ``data``: keyed by resource, the part of the event name before
    the first dot. A body that already holds that resource (``{"subscriber": {...}}``) is
    kept as it is; a bare resource (the purchase of ``purchase.purchase_create``) is put
    under its name."""
    resource = event_name.partition(".")[0]
    return body if isinstance(body.get(resource), dict) else {resource: body}


def derive_id(event_name: str, resource: Any, raw: bytes) -> str:
    described = resource if isinstance(resource, dict) else {}
    parts = (
        event_name,
        str(described.get("id", "")),
        str(described.get("state", "")),
        hashlib.sha256(raw).hexdigest(),
    )
    return "legacy-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def build_records(
    event_name: str, body: dict[str, Any], raw: bytes, received_at: str
) -> list[Record]:
    if not _EVENT_NAME.fullmatch(event_name):
        raise BadRequest("event_name: must look like subscriber.subscriber_activate")
    data = event_data(event_name, body)
    event_id = derive_id(event_name, data.get(event_name.partition(".")[0]), raw)
    value = {
        "id": event_id,
        "type": event_name,
        "created": received_at,
        "data": data,
        "legacy": True,
    }
    return [
        cloudevent(
            source=SOURCE_KIT,
            event_id=event_id,
            event_type=f"kit.{event_name}",
            # Legacy hooks carry no event time; the receive time is the best available.
            time=received_at,
            partition_key=partition_key(data, event_id),
            value=fields.dumps(value),
            received_at=received_at,
        )
    ]


def accept(token: str, incoming: Incoming) -> list[Record]:
    check_path_token(incoming.params, token)
    body = fields.parse_object(incoming.raw)
    return build_records(
        incoming.params.get("event_name", ""), body, incoming.raw, incoming.received_at
    )


ENDPOINT = Endpoint(
    name="kit_legacy",
    path="/webhooks/kit/legacy/{token}/{event_name}",
    summary="Legacy Kit hook: one event of any name, published to ingest.kit.v1 with a derived id",
    security="{token} path segment equal to KIT_LEGACY_TOKEN",
    configured=lambda s: s.kit_legacy_token,
    accept=accept,
    body=BODY,
    authorize=path_token,
    params=(
        Param("token", "equal to KIT_LEGACY_TOKEN", location="path"),
        Param(
            "event_name",
            "the legacy hook's event, e.g. subscriber.subscriber_activate",
            location="path",
            pattern=EVENT_NAME_PATTERN,
        ),
    ),
    limits=EndpointLimits(max_body_bytes=MiB, body_timeout_s=10.0),
)
