"""Kit records -> the subscriber state they report (pure).

Webhooks 2.0 events and legacy hooks share one shape on the topic: ``{"id", "type",
"created", "data": {"subscriber": {...}}}``. The state comes from the subscriber's own
``state`` when it is one Kit defines, else from what the event type implies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumers.decode import is_object
from consumers.errors import PoisonError
from consumers.types import Event

STATES = frozenset({"active", "inactive", "bounced", "complained", "cancelled"})

# event type (webhooks 2.0 and legacy names) -> the state it implies
TYPE_STATES = {
    "subscriber.activated": "active",
    "subscriber.unsubscribed": "cancelled",
    "subscriber.bounced": "bounced",
    "subscriber.complained": "complained",
    "subscriber.subscriber_activate": "active",
    "subscriber.subscriber_unsubscribe": "cancelled",
    "subscriber.subscriber_bounce": "bounced",
    "subscriber.subscriber_complain": "complained",
}


@dataclass(frozen=True, slots=True)
class KitChange:
    email: str  # as sent, trimmed: the database derives the match key
    subscriber_id: str | None
    state: str | None  # None: the event says nothing about the state


def event_type(event: Event) -> str:
    if is_object(event.data) and isinstance(event.data.get("type"), str):
        return str(event.data["type"])
    return event.type.removeprefix("kit.")


def state_of(kind: str, subscriber: Mapping[str, Any]) -> str | None:
    state = subscriber.get("state")
    if isinstance(state, str) and state.strip().lower() in STATES:
        return state.strip().lower()
    return TYPE_STATES.get(kind)


def parse_kit(event: Event) -> KitChange:
    data = event.data if is_object(event.data) else {}
    container = data.get("data")
    subscriber = container.get("subscriber") if is_object(container) else None
    if not is_object(subscriber):
        raise PoisonError("Kit event has no data.subscriber object", event_id=event.id)
    email = subscriber.get("email_address")
    if not isinstance(email, str) or not email.strip():
        raise PoisonError("Kit subscriber has no email_address", event_id=event.id)
    raw_id = subscriber.get("id")
    subscriber_id = str(raw_id) if raw_id is not None and str(raw_id) else None
    return KitChange(
        email=email.strip(),
        subscriber_id=subscriber_id,
        state=state_of(event_type(event), subscriber),
    )
