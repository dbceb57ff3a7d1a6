"""What the database must hold after a workload, computed from the event list alone.

This module never imports the consumers: it restates the rules of docs/contract.md §6 for
the event shapes :mod:`tests.faults.workload` produces, so a bug in a handler cannot hide
in a shared helper.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.faults.workload import (
    CONSENT_TOPICS,
    ENVIRONMENT,
    EXPERIMENTS,
    KIT_TYPES,
    Event,
    Workload,
)

WINDOW = timedelta(days=30)  # conversions.conversion_window_days default (seed 002)
CONSENT = {
    CONSENT_TOPICS[0]: ("email", True),
    CONSENT_TOPICS[1]: ("email", False),
    CONSENT_TOPICS[2]: ("sms", True),
    CONSENT_TOPICS[3]: ("sms", False),
}


@dataclass(slots=True)
class Expected:
    """The comparable state: plain values keyed by natural keys."""

    rc_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    klaviyo_profiles: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    settings: dict[tuple[str, str], bool] = field(default_factory=dict)
    stats: dict[tuple[str, bool], int] = field(default_factory=dict)
    kit: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    participations: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    impressions: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    conversions: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    attributions: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    pending: set[tuple[str, str]] = field(default_factory=set)
    skipped: set[tuple[str, str]] = field(default_factory=set)

    def tables(self) -> dict[str, Any]:
        return {
            "rc_attributes": self.rc_attributes,
            "klaviyo_profiles": self.klaviyo_profiles,
            "settings": self.settings,
            "stats": self.stats,
            "kit": self.kit,
            "participations": self.participations,
            "impressions": self.impressions,
            "conversions": self.conversions,
            "attributions": self.attributions,
            "pending": {k: True for k in self.pending},
            "skipped": {k: True for k in self.skipped},
        }


def expect(workload: Workload) -> Expected:
    out = Expected()
    people = workload.people
    _revenuecat(workload, out)
    profile_owner = _klaviyo_profiles(workload, out)
    _settings(workload, out, profile_owner)
    _kit(workload, out)
    _experiments(workload, out)
    _refunds(workload, out)
    del people
    return out


def _revenuecat(workload: Workload, out: Expected) -> None:
    for person in workload.people:
        out.rc_attributes[person.rc_id] = {}
    for event in _kind(workload, "rc"):
        data = event.data
        if data["environment"] == "SANDBOX":  # belongs to dev; this run is production
            out.skipped.add(("revenuecat", event.id))
            continue
        if event.person is None:
            out.pending.add(("revenuecat", event.id))  # no row will ever have this id
            continue
        merged = out.rc_attributes[data["app_user_id"]]
        for key, entry in data["subscriber_attributes"].items():
            if key not in merged or entry["updated_at_ms"] > merged[key]["updated_at_ms"]:
                merged[key] = dict(entry)


def _klaviyo_profiles(workload: Workload, out: Expected) -> dict[str, int]:
    """Profiles by klaviyo id: the newest flow event not for the other environment."""
    newest: dict[str, Event] = {}
    for event in _kind(workload, "flow"):
        if event.data["profile"]["properties"]["environment"] != ENVIRONMENT:
            out.skipped.add(("klaviyo", event.id))
            continue
        kid = event.data["profile"]["id"]
        if kid not in newest or event.at > newest[kid].at:
            newest[kid] = event
    owner: dict[str, int] = {}
    for kid, event in newest.items():
        p = event.data["profile"]
        assert event.person is not None
        owner[kid] = event.person
        out.klaviyo_profiles[kid] = (
            workload.people[event.person].uid,
            p["email"],
            p["phone_number"],
            p["first_name"],
            p["last_name"],
            p["timezone"],
            ENVIRONMENT,
        )
    return owner


def _settings(workload: Workload, out: Expected, profile_owner: dict[str, int]) -> None:
    for person in workload.people:
        if person.push_setting is not None:
            out.settings[(person.uid, "push")] = person.push_setting
    newest: dict[tuple[str, str], Event] = {}
    for event in _kind(workload, "consent"):
        kid = event.data["payload"]["data"]["relationships"]["profile"]["data"]["id"]
        if kid not in profile_owner:
            out.pending.add(("klaviyo", event.id))  # its profile never exists
            continue
        channel, _ = CONSENT[event.data["topic"]]
        key = (workload.people[profile_owner[kid]].uid, channel)
        if key not in newest or event.at > newest[key].at:
            newest[key] = event
    for key, event in newest.items():
        out.settings[key] = CONSENT[event.data["topic"]][1]
    counted = {workload.people[i].uid for i in profile_owner.values()}
    stats: Counter[tuple[str, bool]] = Counter()
    for (uid, channel), enabled in out.settings.items():
        if uid in counted:
            stats[(channel, enabled)] += 1
    out.stats = dict(stats)


def _kit(workload: Workload, out: Expected) -> None:
    newest: dict[int, Event] = {}
    for event in workload.events:
        if event.kind not in ("kit", "kit-legacy"):
            continue
        assert event.person is not None
        current = newest.get(event.person)
        if current is None or (event.at, event.id) > (current.at, current.id):
            newest[event.person] = event
    for person in workload.people:
        last = newest.get(person.index)
        if last is None:
            out.kit[person.email] = (None, "unconfirmed")  # the column default (seed 002)
            continue
        subscriber = (last.data.get("data") or last.data)["subscriber"]
        state = subscriber["state"] if last.kind == "kit-legacy" else KIT_TYPES[last.data["type"]]
        out.kit[person.email] = (str(subscriber["id"]), state)


@dataclass(frozen=True, slots=True)
class _Converted:
    """A conversion of one participation, first-party or from a purchase."""

    key: str
    at: datetime
    conversion_type: str
    amount: Decimal | None


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def _experiments(workload: Workload, out: Expected) -> None:
    """Participations: the earliest impression decides the variant; impressions of the other
    variant are ineligible and not counted; first-party and purchase conversions count, a
    purchase in every participation of its buyer exposed at or before it."""
    items: dict[tuple[str, str], list[Event]] = {}
    for event in workload.events:
        if event.kind not in ("impression", "conversion"):
            continue
        if event.data["experiment"] not in EXPERIMENTS:
            out.pending.add(("app", event.id))  # unknown experiment: parked for good
            continue
        items.setdefault((event.data["user_id"], event.data["experiment"]), []).append(event)
    purchases = _applied_purchases(workload)
    for key, events in items.items():
        impressions = [e for e in events if e.kind == "impression"]
        first = min(e.at for e in impressions)
        variant = next(e.data["variant"] for e in impressions if e.at == first)
        for e in impressions:
            eligible = e.data["variant"] == variant
            out.impressions[e.id] = (key[0], key[1], e.data["variant"], e.at, eligible)
        converted = [
            _Converted(
                e.id, e.at, e.data["conversion_type"], _money(e.data.get("conversion_value"))
            )
            for e in events
            if e.kind == "conversion"
        ]
        converted += [
            _Converted(f"purchase:{p.id}/{key[1]}", p.at, "purchase", _money(p.data["price"]))
            for p in purchases.get(key[0], ())
            if p.at >= first
        ]
        converted.sort(key=lambda c: c.at)
        for n, c in enumerate(converted):
            seconds = int((c.at - first).total_seconds())
            out.conversions[c.key] = (
                key[0],
                key[1],
                variant,
                c.conversion_type,
                c.amount,
                seconds,
                n == 0,
                first,
            )
            out.attributions[c.key] = (
                key[0],
                key[1],
                variant,
                "first_exposure",
                seconds // 3600,
                c.amount,
            )
        out.participations[key] = (
            variant,
            first,
            sum(e.data["variant"] == variant for e in impressions),
            bool(converted),
            converted[0].at if converted else None,
            any(c.at - first <= WINDOW for c in converted),
        )


# PRODUCT_CHANGE carries a price but no payment (the RENEWAL or INITIAL_PURCHASE after it does).
PURCHASE_TYPES = frozenset({"INITIAL_PURCHASE", "RENEWAL", "NON_RENEWING_PURCHASE"})


def _counts_as_money(event: Event) -> bool:
    """An applied RevenueCat event in the PRODUCTION store (sandbox money is not revenue)."""
    return event.person is not None and event.data["environment"] == "PRODUCTION"


def _applied_purchases(workload: Workload) -> dict[str, list[Event]]:
    """PRODUCTION purchases with a positive price, by their buyer's profile id."""
    found: dict[str, list[Event]] = {}
    for event in _kind(workload, "rc"):
        data = event.data
        if _counts_as_money(event) and data.get("type") in PURCHASE_TYPES and data["price"] > 0:
            assert event.person is not None
            profile = str(workload.people[event.person].profile_id)
            found.setdefault(profile, []).append(event)
    return found


def _refunds(workload: Workload, out: Expected) -> None:
    """Per transaction, the latest of its refunds and reversals decides; a refund in force
    has a row next to each conversion of the transaction's purchases."""
    latest: dict[str, Event] = {}
    for event in _kind(workload, "rc"):
        data = event.data
        kind = data.get("type")
        refund = kind == "CANCELLATION" and data.get("cancel_reason") == "CUSTOMER_SUPPORT"
        if not _counts_as_money(event) or not (refund or kind == "REFUND_REVERSED"):
            continue
        tx = data["transaction_id"]
        if tx not in latest or (event.at, event.id) > (latest[tx].at, latest[tx].id):
            latest[tx] = event
    events = workload.by_key()
    for key, row in list(out.conversions.items()):
        if not key.startswith("purchase:"):
            continue
        purchase_id, experiment = key.removeprefix("purchase:").split("/", 1)
        bought = events[("revenuecat", purchase_id)]
        decided = latest.get(bought.data["transaction_id"])
        if decided is None or decided.data["type"] != "CANCELLATION":
            continue
        user, _, variant, _, _, _, _, first = row
        seconds = int((decided.at - first).total_seconds())
        amount = _money(-decided.data["price"])
        out.conversions[f"refund:{decided.id}/{purchase_id}/{experiment}"] = (
            user,
            experiment,
            variant,
            "refund",
            amount,
            seconds,
            False,
            first,
        )


def _kind(workload: Workload, kind: str) -> list[Event]:
    return [e for e in workload.events if e.kind == kind]


def as_uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def diff(
    expected: dict[Any, Any], actual: dict[Any, Any]
) -> tuple[list[Any], list[Any], list[Any]]:
    """(missing, extra, different) keys between two tables."""
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    different = [k for k in expected if k in actual and expected[k] != actual[k]]
    return missing, extra, different


def at_or_none(value: datetime | None) -> datetime | None:
    return value
