"""What applied RevenueCat events do to the experiment tables (docs/experiments.md):
purchases, refunds and refund reversals go to the ledger and convert; enrolments become
participations. Called by the RevenueCat handler inside its transaction, once per batch.

Order of work, the same in every transaction that touches a person's participations: the
buyers' locks, then the ledger, then the participations (locked), then the writes. A fixed
number of statements per batch.

An enrolment whose customer has no ``user_profiles`` row yet (or, in a mapped experiment, a
variant the experiment lacks) cannot become a participation now: it is left as work of its
own (type :data:`ENROLLMENT_WORK_TYPE`, id ``<event id>/enrollment``) that the runtime parks
until the profile (or the experiment's variant) appears. Purchases need no such work: the
ledger keeps them for the participations that appear later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import asyncpg

from consumers.handlers import buyers, enrollments, ledger, refunds
from consumers.handlers.experiment_plan import Key, Plan
from consumers.handlers.experiment_store import write
from consumers.handlers.purchases import PURCHASE, Money, is_work, money_of
from consumers.pending import waits
from consumers.types import APPLIED, Event, PendingEvent, Result, pending

ENROLLMENT_WORK_TYPE = "revenuecat.enrollment"
ENROLLMENT_SUFFIX = "/enrollment"
NO_PROFILE = "enrolment before profile"
UNKNOWN_VARIANT = "unknown variant"

SELECT_STORED_IMPRESSIONS = "SELECT id FROM impressions WHERE id = ANY($1::uuid[])"


def is_enrollment_work(event: Event) -> bool:
    return event.type == ENROLLMENT_WORK_TYPE


def enrollment_work(event: Event) -> Event:
    """The parked enrolment work of a RevenueCat event."""
    return replace(event, id=event.id + ENROLLMENT_SUFFIX, type=ENROLLMENT_WORK_TYPE, position=None)


@dataclass(slots=True)
class _Subject:
    event: Event
    money: Money | None
    enrolments: list[enrollments.Enrollment]
    buyer: buyers.Buyer = field(default_factory=buyers.Buyer)
    waiting: tuple[str, tuple[str, ...]] | None = None  # (reason, keys) of enrolments


def _subject(event: Event) -> _Subject | None:
    money = None if is_enrollment_work(event) else money_of(event)
    found = [] if is_work(event) else enrollments.enrollments_of(event)
    return _Subject(event, money, found) if money is not None or found else None


async def apply(conn: asyncpg.Connection, events: Sequence[Event]) -> dict[str, Result]:
    """Apply the money and the enrolments of applied RevenueCat events (and of parked work);
    returns, by event id, the result replacing APPLIED where an enrolment must wait."""
    subjects = [s for e in events if (s := _subject(e)) is not None]
    if not subjects:
        return {}
    found = await buyers.resolve(conn, [buyers.identifiers(s.event.data) for s in subjects])
    for subject, buyer in zip(subjects, found, strict=True):
        subject.buyer = buyer
    await buyers.lock_emails(conn, (e for s in subjects for e in s.buyer.emails))
    entries = [s.money for s in subjects if s.money is not None]
    await ledger.record(conn, entries)
    targets = await enrollments.targets(conn, (e for s in subjects for e in s.enrolments))
    parts, experiments = await buyers.participations(
        conn, (p for s in subjects for p in s.buyer.profiles)
    )
    experiments.update({t.experiment.id: t.experiment for t in targets.values()})
    plan = Plan(parts)
    await _enrol(conn, plan, subjects, targets)
    candidates = [
        (s.money, key)
        for s in subjects
        if s.money is not None and s.money.kind == PURCHASE
        for key in plan.participation_keys()
        if key[0] in s.buyer.profiles
    ]
    candidates += await ledger.ledger_candidates(conn, plan.exposed_earlier())
    converted = await ledger.convert(conn, plan, experiments, candidates)
    await write(conn, plan)
    await refunds.sync(conn, [m.transaction_id for m in [*entries, *converted]])
    return {s.event.id: _result(s) for s in subjects if s.waiting is not None}


async def _enrol(
    conn: asyncpg.Connection,
    plan: Plan,
    subjects: Sequence[_Subject],
    targets: Mapping[str, enrollments.Target],
) -> None:
    """Plan each enrolment as an impression of each of its customer's profiles."""
    planned: list[tuple[uuid.UUID, Key, uuid.UUID, enrollments.Enrollment]] = []
    for subject in subjects:
        for enrolment in subject.enrolments:
            target = targets.get(enrolment.experiment)
            if target is None:
                continue
            if not subject.buyer.profiles:
                keys = sorted(waits.key(waits.PROFILE_EMAIL, e) for e in subject.buyer.emails)
                subject.waiting = (NO_PROFILE, tuple(keys))
                continue
            variant_id = target.variant_id(enrolment.variant)
            if variant_id is None:
                wait_for = waits.key(waits.EXPERIMENT, target.experiment.name)
                subject.waiting = (UNKNOWN_VARIANT, (wait_for,))
                continue
            if target.experiment.refusal(enrolment.at) is not None:
                continue  # the experiment does not count at the enrolment's time
            for profile in sorted(subject.buyer.profiles):
                impression = enrollments.impression_id(profile, enrolment)
                planned.append((impression, (profile, target.experiment.id), variant_id, enrolment))
    if not planned:
        return
    ids = sorted({p[0] for p in planned})
    stored = {r["id"] for r in await conn.fetch(SELECT_STORED_IMPRESSIONS, ids)}
    for impression, key, variant_id, enrolment in planned:
        if impression not in stored:
            stored.add(impression)
            columns = enrollments.impression_columns(enrolment)
            plan.impression(impression, key, variant_id, enrolment.at, columns)


def _result(subject: _Subject) -> Result:
    assert subject.waiting is not None
    reason, keys = subject.waiting
    if is_enrollment_work(subject.event):
        return pending(reason, *keys)
    work = PendingEvent(enrollment_work(subject.event), reason, keys)
    return replace(APPLIED, follow_up=(work,))
