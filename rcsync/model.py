"""The words of rc-sync: a customer as our tables describe it, a customer to sync, and
RevenueCat's final answer to one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The attributes rc-sync owns (seed 001): two of RevenueCat's reserved ones, and ours.
EMAIL = "$email"
DISPLAY_NAME = "$displayName"
ENVIRONMENT = "environment"
OWNED = (EMAIL, DISPLAY_NAME, ENVIRONMENT)

# {"$email": {"value": "a@example.com", "updated_at_ms": 1700591793409}, ...}: the shape of
# ``revenue_cat_attributes``, of an event's ``subscriber_attributes`` and of the body sent.
Attributes = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ours:
    """What our tables say about the person behind one RevenueCat id."""

    email: str | None  # users.email
    klaviyo_first_name: str | None = None  # user_klaviyo_profiles.first_name
    klaviyo_last_name: str | None = None  # user_klaviyo_profiles.last_name
    profile_first_name: str | None = None  # user_profiles.first_name (same lower-cased email)


@dataclass(frozen=True, slots=True)
class Customer:
    """One ``user_revenue_cat_ids`` row with its person and rc-sync's state for it."""

    revenue_cat_id: str
    stored: Attributes  # revenue_cat_attributes: what RevenueCat holds, as far as we know
    ours: Ours
    intent: Attributes | None = None  # a call written down and not answered yet
    refused: Mapping[str, str] = field(default_factory=dict)  # attribute -> refused value


@dataclass(frozen=True, slots=True)
class Target:
    """A customer to bring in line: ``reported`` is what RevenueCat's events said it holds
    (their ``subscriber_attributes``, merged), stamped with ``event_ms`` where an entry
    carries no time of its own; ``also`` are other ids of ours the events named for the
    same RevenueCat customer (merged accounts), recorded with it."""

    revenue_cat_id: str
    reported: Attributes = field(default_factory=dict)
    event_ms: float = 0.0
    also: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """RevenueCat's last word on one call: which attributes it took and which it refused
    (attribute -> its reason), with the status of that answer."""

    status: int
    accepted: tuple[str, ...]
    refused: Mapping[str, str] = field(default_factory=dict)
