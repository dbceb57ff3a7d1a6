"""Klaviyo records -> what they ask of the database (pure).

Two kinds share the topic: flow-webhook profiles (``klaviyo.flow.profile``, the whole posted
body) and system-webhook events (``klaviyo.{topic}``, ``{"external_id", "topic",
"payload"}``), of which only the marketing-consent topics change anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from consumers.errors import PoisonError
from consumers.types import Event
from contract.fields import dig

FLOW_TYPE = "klaviyo.flow.profile"

# system-webhook topic -> (notification channel, enabled)
CONSENT_TOPICS = {
    "event:klaviyo.subscribed_to_email_marketing": ("email", True),
    "event:klaviyo.unsubscribed_from_email_marketing": ("email", False),
    "event:klaviyo.subscribed_to_sms_marketing": ("sms", True),
    "event:klaviyo.unsubscribed_from_sms_marketing": ("sms", False),
}

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class FlowProfile:
    """A profile from the flow webhook. Optional fields the template left out are ``_UNSET``
    (keep the stored value); fields sent as null clear the stored value."""

    klaviyo_id: str
    email: str | None
    external_id: str | None
    phone_number: Any
    first_name: Any
    last_name: Any
    timezone: str | None
    environment: str | None

    def has(self, field: str) -> bool:
        return getattr(self, field) is not _UNSET


@dataclass(frozen=True, slots=True)
class Consent:
    profile_id: str
    channel: str
    enabled: bool


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _properties(value: Any) -> Mapping[str, Any]:
    # A flow template may render the properties object as a JSON string.
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _optional(profile: Mapping[str, Any], key: str) -> Any:
    if key not in profile:
        return _UNSET
    return _text(profile[key])


def parse_flow(event: Event) -> FlowProfile:
    body = event.data
    profile = body.get("profile") if isinstance(body, Mapping) else None
    if not isinstance(profile, Mapping):
        raise PoisonError("flow webhook body has no profile object", event_id=event.id)
    klaviyo_id = _text(profile.get("id"))
    if klaviyo_id is None:
        raise PoisonError("flow webhook profile has no id", event_id=event.id)
    environment = _properties(profile.get("properties")).get("environment")
    return FlowProfile(
        klaviyo_id=klaviyo_id,
        email=_text(profile.get("email")),
        external_id=_text(profile.get("external_id")),
        phone_number=_optional(profile, "phone_number"),
        first_name=_optional(profile, "first_name"),
        last_name=_optional(profile, "last_name"),
        timezone=_text(profile.get("timezone")),
        environment=_text(environment),
    )


def system_topic(event: Event) -> str:
    if isinstance(event.data, Mapping) and isinstance(event.data.get("topic"), str):
        return str(event.data["topic"])
    return event.type.removeprefix("klaviyo.")


def parse_consent(event: Event) -> Consent | None:
    """The consent change of a system-webhook event, or None for any other topic."""
    change = CONSENT_TOPICS.get(system_topic(event))
    if change is None:
        return None
    data = event.data if isinstance(event.data, Mapping) else {}
    profile_id = dig(data, "payload", "data", "relationships", "profile", "data", "id")
    if not isinstance(profile_id, str) or not profile_id:
        raise PoisonError("consent event names no profile", event_id=event.id)
    channel, enabled = change
    return Consent(profile_id, channel, enabled)
