"""Kit records -> the subscriber state they report (pure).

Webhooks 2.0 events and legacy hooks share one shape on the topic: ``{"id", "type",
"created", "data": {...}}``, ``data`` holding the subscriber and/or the resource the event is
about. Only the event types that change what we keep (``user_profiles.kit_subscriber_id``
and ``kit_state``, seed 002) are applied; every other event -- tags, sequences, forms,
broadcasts, posts, custom fields, purchases, with or without a subscriber -- is acknowledged
without effect: the schema has no place for it.

The state comes from the subscriber's own ``state`` when it is one Kit defines, else from
what the event type implies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumers.decode import is_object
from consumers.types import APPLIED, Event, Result, skipped

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
# The event types applied to the subscriber's profile: a new subscriber (its state is the
# subscriber's own) and every state change.
STATE_EVENT_TYPES = frozenset({"subscriber.created", *TYPE_STATES})

NO_EMAIL = "kit subscriber without email"
# Longer than any email address (RFC 5321: 254) and than ingest lets into a record key.
MAX_EMAIL = 256


@dataclass(frozen=True, slots=True)
class KitChange:
    email: str  # lower-cased
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


def parse_kit(event: Event) -> KitChange | Result:
    """The change a subscriber state event asks for; for any other event its result at
    once: APPLIED without effect, or skipped when a state event names no subscriber email
    (nothing to match it to, now or later)."""
    kind = event_type(event)
    if kind not in STATE_EVENT_TYPES:
        return APPLIED
    data = event.data if is_object(event.data) else {}
    container = data.get("data")
    subscriber = container.get("subscriber") if is_object(container) else None
    if not is_object(subscriber):
        return skipped(NO_EMAIL)
    email = subscriber.get("email_address")
    if not isinstance(email, str) or not email.strip() or len(email) > MAX_EMAIL:
        return skipped(NO_EMAIL)
    raw_id = subscriber.get("id")
    subscriber_id = str(raw_id) if raw_id is not None and str(raw_id) else None
    return KitChange(
        email=email.strip().lower(),
        subscriber_id=subscriber_id,
        state=state_of(kind, subscriber),
    )
