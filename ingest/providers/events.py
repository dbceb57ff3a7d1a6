"""First-party A/B testing events (docs/contract.md §4.6): 1..500 impressions and conversions per
request.

Every item is validated against the item table of :mod:`contract.items` (the ``impressions`` /
``conversions`` columns of seed 002) before anything is published: a batch with one invalid
item is rejected whole, naming the item and the field. The consumer decodes records with the
same table, so whatever is accepted here applies there. Fields the table does not know are
passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract.items import InvalidField, parse_fields
from contract.records import Record, cloudevent, rfc3339
from contract.topics import SOURCE_APP
from contract.values import ref
from ingest import fields
from ingest.endpoint import Endpoint, Head, Incoming
from ingest.errors import BadCredentials, BadRequest
from ingest.verify import equal, header_bytes, require_header

MAX_EVENTS = 500
# The body build_records and fields.parse(nul="reject") accept; the items are contract.items'.
BODY = {
    **fields.obj({"events": fields.array(ref("EventItem"), minimum=1, maximum=MAX_EVENTS)}),
    "propertyNames": ref("Text"),
    "additionalProperties": ref("JsonValue"),
}


def validate_item(item: Any, index: int) -> dict[str, Any]:
    """The item's typed values when valid; else BadRequest naming ``events[index].field``."""
    path = f"events[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{path}: must be an object")
    try:
        return parse_fields(item)
    except InvalidField as exc:
        where = f"{path}.{exc.field}" if exc.field else path
        raise BadRequest(f"{where}: {exc.message}") from None


def verify(headers: Mapping[str, str], api_key: str) -> None:
    given = require_header(headers, "Authorization")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not equal(header_bytes(key.strip()), api_key.encode()):
        raise BadCredentials("Authorization must be 'Bearer <EVENTS_API_KEY>'")


def build_records(body: dict[str, Any], received_at: str) -> list[Record]:
    items = fields.require_list(body.get("events"), "events", minimum=1, maximum=MAX_EVENTS)
    # Every item is validated before any record is built; ce_time reuses the occurred_at
    # that validation parsed (no second parse), and the other typed values are dropped.
    event_times = [
        rfc3339(validate_item(item, index)["occurred_at"]) for index, item in enumerate(items)
    ]
    return [
        cloudevent(
            source=SOURCE_APP,
            event_id=item["id"].lower(),
            event_type=f"app.{item['type']}",
            time=event_time,
            partition_key=item["user_id"].lower(),
            value=fields.dumps(item),
            received_at=received_at,
        )
        for item, event_time in zip(items, event_times, strict=True)
    ]


def authorize(api_key: str, head: Head) -> None:
    verify(head.headers, api_key)


def accept(api_key: str, incoming: Incoming) -> list[Record]:
    verify(incoming.headers, api_key)
    # First-party items are held to the table of contract.items: U+0000 is refused, not
    # replaced as in provider bodies.
    body = fields.parse(incoming.raw, nul="reject").body
    return build_records(body, incoming.received_at)


ENDPOINT = Endpoint(
    name="events",
    path="/events",
    summary="First-party impressions and conversions (1..500), one record each on "
    "ingest.experiments.v1",
    security="Authorization: Bearer <EVENTS_API_KEY>",
    configured=lambda s: s.events_api_key,
    accept=accept,
    body=BODY,
    authorize=authorize,
    success_status=202,
    scheme="eventsBearer",
)
