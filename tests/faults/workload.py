"""A seeded workload for the fault suite: people, the events they cause, and the signed HTTP
requests that carry them.

Everything is drawn from one ``random.Random(seed)``, so a failing run is replayed with the
printed seed (``FAULTS_SEED``). Event times are unique across the whole workload (no ties for
the ordering rules to break) and lie in the past; requests are shuffled, so per-user events
arrive out of order. Purchases fall before, during and after the exposures; some are
refunded, and some refunds reversed; some participations see the other variant too. The
shapes are chosen so that the final database state does not depend on the order of arrival
(docs/reliability.md explains the few choices this forces).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import orjson

SECRETS = {
    "REVENUECAT_AUTHORIZATION": "Bearer faults-rc-auth-5f1c",
    "REVENUECAT_WEBHOOK_SECRET": "faults-rc-hmac-9a2e",
    "KLAVIYO_WEBHOOK_SECRET": "faults-klaviyo-secret-77d0",
    "KLAVIYO_FLOW_TOKEN": "faults-flow-token-3c4b",
    "KIT_WEBHOOK_SECRET": "faults-kit-secret-b81f",
    "KIT_LEGACY_TOKEN": "faults-kit-legacy-e63a",
    "EVENTS_API_KEY": "faults-events-key-0d9c",
}
ENVIRONMENT = "production"  # so PRODUCTION purchases apply and SANDBOX events are skipped
EXPERIMENTS = ("faults-a", "faults-b", "faults-c", "faults-d")
VARIANTS = ("control", "green")
KLAVIYO_WEBHOOK_ID = "01HFAULTSWEBH00K000000000"
CONSENT_TOPICS = (
    "event:klaviyo.subscribed_to_email_marketing",
    "event:klaviyo.unsubscribed_from_email_marketing",
    "event:klaviyo.subscribed_to_sms_marketing",
    "event:klaviyo.unsubscribed_from_sms_marketing",
)
OTHER_KLAVIYO_TOPIC = "event:klaviyo.opened_email"
KIT_TYPES = {
    "subscriber.activated": "active",
    "subscriber.unsubscribed": "cancelled",
    "subscriber.bounced": "bounced",
    "subscriber.complained": "complained",
}
LEGACY_KIT = {"subscriber.subscriber_activate": "active", "subscriber.subscriber_bounce": "bounced"}
RC_TYPES = ("INITIAL_PURCHASE", "RENEWAL", "CANCELLATION", "BILLING_ISSUE", "PRODUCT_CHANGE")
RC_PURCHASES = frozenset({"INITIAL_PURCHASE", "RENEWAL", "PRODUCT_CHANGE"})
RC_ATTRIBUTE_KEYS = ("$email", "$displayName", "plan", "level", "environment")
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    uid: str  # users.uid
    email: str
    phone: str
    rc_id: str
    klaviyo_id: str
    profile_id: uuid.UUID  # user_profiles.id
    kit_id: int
    late: bool  # its rows are created in the middle of the run
    push_setting: bool | None  # a notification setting that exists before any event


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event, as the oracle sees it."""

    source: str  # ce_source: revenuecat, klaviyo, kit, app
    id: str  # ce_id
    kind: str  # rc, flow, consent, klaviyo-other, kit, kit-legacy, impression, conversion
    at: datetime
    person: int | None
    data: dict[str, Any]


@dataclass(slots=True)
class Request:
    """One HTTP request; ``sign`` adds the headers at send time (signatures carry a time)."""

    path: str
    body: bytes
    signer: str
    events: tuple[str, ...]  # (source/id) of the events it carries
    headers: dict[str, str] = field(default_factory=dict)

    def signed(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **SIGNERS[self.signer](self.body)}


@dataclass(slots=True)
class Workload:
    seed: int
    people: list[Person]
    events: list[Event]
    requests: list[Request]
    unknown_rc_ids: list[str]

    def by_key(self) -> dict[tuple[str, str], Event]:
        return {(e.source, e.id): e for e in self.events}


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _timestamped(secret: str, body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1={_hmac_hex(secret, f'{t}.'.encode() + body)}"


def _sign_rc(body: bytes) -> dict[str, str]:
    return {
        "Authorization": SECRETS["REVENUECAT_AUTHORIZATION"],
        "X-RevenueCat-Webhook-Signature": _timestamped(SECRETS["REVENUECAT_WEBHOOK_SECRET"], body),
    }


def _sign_klaviyo(body: bytes) -> dict[str, str]:
    sent = formatdate(time.time(), usegmt=True)
    return {
        "Klaviyo-Webhook-Id": KLAVIYO_WEBHOOK_ID,
        "Klaviyo-Timestamp": sent,
        "Klaviyo-Signature": _hmac_hex(SECRETS["KLAVIYO_WEBHOOK_SECRET"], body + sent.encode()),
    }


def _sign_kit(body: bytes) -> dict[str, str]:
    return {"X-Kit-Signature": _timestamped(SECRETS["KIT_WEBHOOK_SECRET"], body)}


def _sign_events(body: bytes) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS['EVENTS_API_KEY']}"}


def _unsigned(body: bytes) -> dict[str, str]:
    return {}


SIGNERS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "revenuecat": _sign_rc,
    "klaviyo": _sign_klaviyo,
    "kit": _sign_kit,
    "events": _sign_events,
    "none": _unsigned,
}


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Clock:
    """Unique whole-second event times inside a window, drawn without replacement."""

    def __init__(self, rng: random.Random, base: datetime) -> None:
        self._rng = rng
        self._base = base
        self._used: set[int] = set()

    def at(self, low_days: float, high_days: float) -> datetime:
        while True:
            second = self._rng.randrange(int(low_days * DAY_S), int(high_days * DAY_S))
            if second not in self._used:
                self._used.add(second)
                return self._base + timedelta(seconds=second)


def make_people(rng: random.Random, count: int, late_share: float) -> list[Person]:
    tag = f"{rng.getrandbits(24):06x}"
    people = []
    for i in range(count):
        roll = rng.random()
        people.append(
            Person(
                index=i,
                uid=f"fu_{tag}_{i}",
                email=f"person{i}.{tag}@faults.example",
                phone=f"+1500{rng.randrange(10**7):07d}",
                rc_id=f"rc_{tag}_{i}",
                klaviyo_id=f"KF{tag.upper()}{i:05d}",
                profile_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                kit_id=7_000_000 + i,
                late=rng.random() < late_share,
                push_setting=None if roll < 0.6 else roll < 0.8,
            )
        )
    return people


class _Builder:
    def __init__(self, rng: random.Random, people: list[Person], base: datetime) -> None:
        self.rng = rng
        self.people = people
        self.clock = _Clock(rng, base)
        self.events: list[Event] = []
        self.unknown_rc_ids = [f"rc_unknown_{rng.getrandbits(32):08x}_{i}" for i in range(8)]

    def _person(self) -> Person:
        return self.rng.choice(self.people)

    def _add(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def revenuecat(self) -> Event:
        rc_type = self.rng.choice(RC_TYPES)
        # Purchases are spread over days 0-75, around and after the exposures (days 20-30),
        # so many convert, some before their participation exists (topics lag).
        at = self.clock.at(0, 75) if rc_type in RC_PURCHASES else self.clock.at(0, 10)
        unknown = self.rng.random() < 0.02
        person = None if unknown else self._person()
        rc_id = self.rng.choice(self.unknown_rc_ids) if person is None else person.rc_id
        price = round(self.rng.uniform(1, 50), 2) if rc_type in RC_PURCHASES else 0
        payload = self._rc_payload(rc_type, at, rc_id, price)
        if rc_type in RC_PURCHASES:
            payload["transaction_id"] = f"tx_{self.rng.getrandbits(48):012x}"
        event = Event(
            "revenuecat", payload["id"], "rc", at, None if person is None else person.index, payload
        )
        return self._add(event)

    def _rc_payload(self, rc_type: str, at: datetime, rc_id: str, price: float) -> dict[str, Any]:
        ms = int(at.timestamp() * 1000)
        attributes: dict[str, Any] = {}
        for key in self.rng.sample(RC_ATTRIBUTE_KEYS, self.rng.randint(1, 3)):
            value = ENVIRONMENT if key == "environment" else f"{key}-{self.rng.getrandbits(20)}"
            # Unique per event: the attribute's own time, spread around the event time.
            attributes[key] = {"value": value, "updated_at_ms": ms + self.rng.randrange(1000)}
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4)).upper()
        return {
            "id": event_id,
            "type": rc_type,
            "app_id": "app_faults",
            "app_user_id": rc_id,
            "original_app_user_id": rc_id,
            "aliases": [rc_id],
            "event_timestamp_ms": ms,
            "environment": "SANDBOX" if self.rng.random() < 0.1 else "PRODUCTION",
            "store": "APP_STORE",
            "product_id": "premium_monthly",
            "price": price,
            "currency": "USD",
            "subscriber_attributes": attributes,
        }

    def refund(self, bought: Event) -> Event:
        """A refund of ``bought`` (all of it or part), a little later; sometimes reversed."""
        day = (bought.at - self.clock._base).total_seconds() / DAY_S
        at = self.clock.at(day + 0.01, day + 10)
        share = 1.0 if self.rng.random() < 0.7 else self.rng.uniform(0.1, 0.9)
        amount = round(bought.data["price"] * share, 2) or bought.data["price"]
        payload = self._rc_payload("CANCELLATION", at, bought.data["app_user_id"], -amount)
        payload["cancel_reason"] = "CUSTOMER_SUPPORT"
        payload["transaction_id"] = bought.data["transaction_id"]
        return self._add(Event("revenuecat", payload["id"], "rc", at, bought.person, payload))

    def reversal(self, refund: Event) -> Event:
        day = (refund.at - self.clock._base).total_seconds() / DAY_S
        at = self.clock.at(day + 0.01, day + 5)
        price = -refund.data["price"]
        payload = self._rc_payload("REFUND_REVERSED", at, refund.data["app_user_id"], price)
        payload["transaction_id"] = refund.data["transaction_id"]
        return self._add(Event("revenuecat", payload["id"], "rc", at, refund.person, payload))

    def flow(self) -> Event:
        person = self._person()
        at = self.clock.at(0, 60)
        environment = "dev" if self.rng.random() < 0.08 else ENVIRONMENT
        event_id = f"{person.klaviyo_id}:{self.rng.getrandbits(64):016x}"
        body: dict[str, Any] = {
            "event_id": event_id,
            "occurred_at": rfc3339(at),
            "profile": {
                "id": person.klaviyo_id,
                "email": person.email,
                "phone_number": person.phone,
                "first_name": f"First{self.rng.getrandbits(16)}",
                "last_name": f"Last{self.rng.getrandbits(16)}",
                "external_id": person.uid,
                "timezone": self.rng.choice(("UTC", "Europe/Paris", "America/New_York")),
                "properties": {"environment": environment},
            },
        }
        return self._add(Event("klaviyo", event_id, "flow", at, person.index, body))

    def klaviyo_system(self) -> Event:
        person = self._person()
        at = self.clock.at(0, 60)
        other = self.rng.random() < 0.1
        topic = OTHER_KLAVIYO_TOPIC if other else self.rng.choice(CONSENT_TOPICS)
        external_id = f"kx_{self.rng.getrandbits(64):016x}"
        element: dict[str, Any] = {
            "external_id": external_id,
            "topic": topic,
            "payload": {
                "data": {
                    "type": "event",
                    "id": f"{self.rng.getrandbits(64):016X}",
                    "attributes": {"datetime": rfc3339(at), "timestamp": int(at.timestamp())},
                    "relationships": {
                        "profile": {"data": {"type": "profile", "id": person.klaviyo_id}}
                    },
                }
            },
        }
        kind = "klaviyo-other" if other else "consent"
        return self._add(Event("klaviyo", external_id, kind, at, person.index, element))

    def kit(self) -> Event:
        person = self._person()
        at = self.clock.at(0, 60)
        kit_type = self.rng.choice(tuple(KIT_TYPES))
        email = person.email.upper() if self.rng.random() < 0.2 else person.email
        event_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        event: dict[str, Any] = {
            "id": event_id,
            "type": kit_type,
            "created": rfc3339(at),
            "data": {
                "subscriber": {
                    "id": person.kit_id,
                    "email_address": email,
                    "state": KIT_TYPES[kit_type],
                    "first_name": "Kit",
                }
            },
        }
        return self._add(Event("kit", event_id, "kit", at, person.index, event))

    def experiment_items(self, person: Person, experiment: str) -> list[Event]:
        variant = self.rng.choice(VARIANTS)
        first = self.clock.at(20, 30)
        # The impressions of the assigned variant share its first-exposure time, so which
        # one carries is_first_exposure is the only thing arrival decides.
        items: list[Event] = []
        for _ in range(self.rng.randint(1, 4)):
            items.append(self._item(person, experiment, variant, "impression", first))
        if self.rng.random() < 0.15:
            # An impression of the other variant, at its own time: earlier than the first
            # exposure it takes the participation over, later it is stored as ineligible.
            other = VARIANTS[1 - VARIANTS.index(variant)]
            items.append(self._item(person, experiment, other, "impression", self.clock.at(18, 32)))
        for _ in range(self.rng.choice((0, 0, 1, 1, 2, 3))):
            at = self.clock.at((first - self.clock._base).total_seconds() / DAY_S + 0.01, 75)
            items.append(self._item(person, experiment, variant, "conversion", at))
        return items

    def _item(
        self, person: Person, experiment: str, variant: str, kind: str, at: datetime
    ) -> Event:
        item: dict[str, Any] = {
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": kind,
            "user_id": str(person.profile_id),
            "experiment": experiment,
            "variant": variant,
            "occurred_at": rfc3339(at),
        }
        if kind == "conversion":
            item["conversion_type"] = self.rng.choice(("signup", "purchase"))
            if self.rng.random() < 0.7:
                item["conversion_value"] = round(self.rng.uniform(1, 100), 2)
        else:
            item["page_url"] = "https://faults.example/checkout"
        return self._add(Event("app", item["id"], kind, at, person.index, item))

    def legacy_kit(self, person: Person) -> Event:
        name = self.rng.choice(tuple(LEGACY_KIT))
        body = {
            "subscriber": {
                "id": person.kit_id,
                "email_address": person.email,
                "state": LEGACY_KIT[name],
                "first_name": "Legacy",
            }
        }
        # The id is derived by ingest; the oracle keys legacy events by person instead.
        event = Event("kit", f"legacy:{person.index}", "kit-legacy", _FAR, person.index, body)
        event.data["_event_name"] = name
        return self._add(event)


_FAR = datetime(2999, 1, 1, tzinfo=UTC)  # legacy hooks take the receive time: newest of all


def _chunks(rng: random.Random, items: list[Any], low: int, high: int) -> Iterator[list[Any]]:
    i = 0
    while i < len(items):
        n = rng.randint(low, high)
        yield items[i : i + n]
        i += n


def _requests_for(rng: random.Random, builder: _Builder) -> list[Request]:
    by_kind: dict[str, list[Event]] = {}
    for event in builder.events:
        by_kind.setdefault(event.kind, []).append(event)
    requests: list[Request] = []
    flow_token = SECRETS["KLAVIYO_FLOW_TOKEN"]
    legacy_token = SECRETS["KIT_LEGACY_TOKEN"]
    for e in by_kind.get("rc", []):
        body = orjson.dumps({"api_version": "1.0", "event": e.data})
        requests.append(Request("/webhooks/revenuecat", body, "revenuecat", (f"rc/{e.id}",)))
    for e in by_kind.get("flow", []):
        path = f"/webhooks/klaviyo/flow/{flow_token}"
        requests.append(Request(path, orjson.dumps(e.data), "none", (f"flow/{e.id}",)))
    system = by_kind.get("consent", []) + by_kind.get("klaviyo-other", [])
    rng.shuffle(system)
    for group in _chunks(rng, system, 1, 20):
        requests.append(_klaviyo_request(group))
    kits = by_kind.get("kit", [])
    rng.shuffle(kits)
    for group in _chunks(rng, kits, 1, 10):
        requests.append(_kit_request(rng, group))
    for e in by_kind.get("kit-legacy", []):
        name = e.data["_event_name"]
        body = orjson.dumps({"subscriber": e.data["subscriber"]})
        path = f"/webhooks/kit/legacy/{legacy_token}/{name}"
        requests.append(Request(path, body, "none", (f"legacy/{e.id}",)))
    items = by_kind.get("impression", []) + by_kind.get("conversion", [])
    rng.shuffle(items)
    for group in _chunks(rng, items, 1, 40):
        requests.append(_events_request(group))
    return requests


def _klaviyo_request(group: list[Event]) -> Request:
    meta = {"klaviyo_webhook_id": KLAVIYO_WEBHOOK_ID, "klaviyo_account_id": "FAULTS"}
    body = orjson.dumps({"data": [e.data for e in group], "meta": meta})
    return Request("/webhooks/klaviyo", body, "klaviyo", tuple(f"klaviyo/{e.id}" for e in group))


def _kit_request(rng: random.Random, group: list[Event]) -> Request:
    body = orjson.dumps({"delivery_id": rng.getrandbits(40), "events": [e.data for e in group]})
    return Request("/webhooks/kit", body, "kit", tuple(f"kit/{e.id}" for e in group))


def _events_request(group: list[Event]) -> Request:
    body = orjson.dumps({"events": [e.data for e in group]})
    return Request("/events", body, "events", tuple(f"app/{e.id}" for e in group))


def _redeliveries(rng: random.Random, builder: _Builder, requests: list[Request]) -> list[Request]:
    """Exact re-posts of some requests, and re-deliveries of some events in a different
    request body (other batch companions, another Kit delivery id)."""
    again = [
        Request(r.path, r.body, r.signer, r.events)
        for r in rng.sample(requests, len(requests) // 12)
    ]
    kits = [e for e in builder.events if e.kind == "kit"]
    for group in _chunks(rng, rng.sample(kits, len(kits) // 20), 1, 5):
        again.append(_kit_request(rng, group))
    system = [e for e in builder.events if e.kind in ("consent", "klaviyo-other")]
    for group in _chunks(rng, rng.sample(system, len(system) // 20), 1, 5):
        again.append(_klaviyo_request(group))
    items = [e for e in builder.events if e.kind in ("impression", "conversion")]
    for group in _chunks(rng, rng.sample(items, len(items) // 20), 1, 10):
        again.append(_events_request(group))
    return again


def build(
    seed: int,
    *,
    users: int,
    events: int,
    late_share: float = 0.1,
    now: float | None = None,
) -> Workload:
    """``events`` distinct provider events for ``users`` people, across the four sources, and
    the shuffled requests that carry them (plus re-posts and re-deliveries). Event times lie
    in the 90 days before ``now`` (the clock by default): the same seed and ``now`` build the
    same requests."""
    rng = random.Random(seed)
    base = datetime.fromtimestamp(int(time.time() if now is None else now) - 90 * DAY_S, UTC)
    people = make_people(rng, users, late_share)
    builder = _Builder(rng, people, base)
    for person in rng.sample(people, max(1, users // 6)):
        builder.legacy_kit(person)
    pairs = [(p, x) for p in people for x in EXPERIMENTS if rng.random() < 0.9]
    rng.shuffle(pairs)
    share = {"rc": 0.22, "flow": 0.07, "klaviyo": 0.16, "kit": 0.17}
    targets = {kind: int(events * s) for kind, s in share.items()}
    made = {kind: 0 for kind in share}
    makers = {
        "rc": builder.revenuecat,
        "flow": builder.flow,
        "klaviyo": builder.klaviyo_system,
        "kit": builder.kit,
    }
    for kind, maker in makers.items():
        while made[kind] < targets[kind]:
            maker()
            made[kind] += 1
    for person, experiment in pairs:
        if len(builder.events) >= events:
            break
        builder.experiment_items(person, experiment)
    _refunds(rng, builder)
    unknown = _unknown_experiment_items(builder, max(1, events // 500))
    del unknown
    requests = _requests_for(rng, builder)
    requests += _redeliveries(rng, builder, requests)
    rng.shuffle(requests)
    return Workload(seed, people, builder.events, requests, builder.unknown_rc_ids)


def _refunds(rng: random.Random, builder: _Builder) -> None:
    """Refunds of about a tenth of the purchases, a third of them reversed later."""
    bought = [e for e in builder.events if e.kind == "rc" and e.data["type"] in RC_PURCHASES]
    for event in rng.sample(bought, len(bought) // 10):
        refund = builder.refund(event)
        if rng.random() < 0.3:
            builder.reversal(refund)


def _unknown_experiment_items(builder: _Builder, count: int) -> list[Event]:
    """Items for an experiment nobody created: parked for good."""
    return [
        builder._item(
            builder._person(), "faults-unknown", "control", "impression", builder.clock.at(20, 30)
        )
        for _ in range(count)
    ]
