"""What RevenueCat should hold for a customer, and what to send to get it there (pure).

- ``$email``: ``users.email`` of the row's user, without surrounding blanks;
- ``$displayName``: the user's Klaviyo profile ``first_name`` and ``last_name`` joined by a
  space (either alone when the other is empty), else ``user_profiles.first_name`` of the
  profile with the same lower-cased email;
- ``environment``: ``ENVIRONMENT``.

A value we do not have is never sent (rc-sync never deletes an attribute), a value RevenueCat
already holds is never sent again, and neither is one it refused. A customer whose
``environment`` attribute names another deployment is not ours to write to.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from consumers.decode import is_object
from consumers.handlers.attributes import merge, updated_at
from consumers.handlers.environment import property_mismatch, revenuecat_mismatch
from consumers.handlers.revenuecat import identifiers
from consumers.types import Event
from rcsync.model import (
    DISPLAY_NAME,
    EMAIL,
    ENVIRONMENT,
    Attributes,
    Customer,
    Ours,
    Target,
)


def _text(value: str | None) -> str:
    return (value or "").strip()


def display_name(ours: Ours) -> str | None:
    klaviyo = " ".join(
        p for p in map(_text, (ours.klaviyo_first_name, ours.klaviyo_last_name)) if p
    )
    return klaviyo or _text(ours.profile_first_name) or None


def wanted(ours: Ours, environment: str) -> dict[str, str]:
    """The owned attributes we have a value for."""
    values = {EMAIL: _text(ours.email), DISPLAY_NAME: display_name(ours), ENVIRONMENT: environment}
    return {key: value for key, value in values.items() if value}


def value_of(entry: Any) -> Any:
    return entry.get("value") if isinstance(entry, Mapping) else None


def foreign(known: Attributes, environment: str) -> str | None:
    """Why the customer belongs to another deployment, if its ``environment`` says so."""
    return property_mismatch(value_of(known.get(ENVIRONMENT)), environment, "environment attribute")


def changes(
    customer: Customer,
    environment: str,
    now_ms: int,
    reported: Attributes | None = None,
    event_ms: float = 0.0,
) -> Attributes:
    """The body's attributes for ``customer``: each owned attribute whose value differs from
    what RevenueCat holds (the stored attributes merged with what events ``reported``), with
    an ``updated_at_ms`` later than the one it replaces (RevenueCat keeps the latest)."""
    known, _ = merge(customer.stored, reported or {}, event_ms)
    if foreign(known, environment):
        return {}
    body: Attributes = {}
    for key, value in wanted(customer.ours, environment).items():
        entry = known.get(key)
        if value_of(entry) == value or customer.refused.get(key) == value:
            continue
        previous = updated_at(entry)
        later = math.floor(previous) + 1 if math.isfinite(previous) else now_ms
        body[key] = {"value": value, "updated_at_ms": max(now_ms, later)}
    return body


def targets(events: Iterable[Event], known_ids: Iterable[str], environment: str) -> list[Target]:
    """One target per customer the events name, in the order first named. An event is for
    the first of its ids (``app_user_id``, ``original_app_user_id``, aliases...) that is a row
    of ours; events for the other environment, events that are not a JSON object and events
    for ids we do not know are left out."""
    known = set(known_ids)
    found: dict[str, Target] = {}
    for event in events:
        payload = event.data
        if not is_object(payload) or revenuecat_mismatch(payload, environment) is not None:
            continue
        ids = [i for i in identifiers(payload) if i in known]
        if not ids:
            continue
        event_ms = event.time.timestamp() * 1000.0
        previous = found.get(ids[0], Target(ids[0]))
        reported, _ = merge(previous.reported, payload.get("subscriber_attributes"), event_ms)
        also = tuple(dict.fromkeys((*previous.also, *ids[1:])))
        found[ids[0]] = Target(ids[0], reported, max(previous.event_ms, event_ms), also)
    return list(found.values())
