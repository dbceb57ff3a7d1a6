"""RevenueCat events -> ``user_revenue_cat_ids`` (docs/contract.md §6, seed 001).

The row is the one whose ``revenue_cat_id`` is the event's ``app_user_id``,
``original_app_user_id`` or one of its ``aliases`` (every such row when accounts were merged:
they describe the same RevenueCat customer). Subscriber attributes merge key by key, the
later ``updated_at_ms`` winning, so the attributes themselves carry the ordering. Then
purchases, refunds and enrolments change the experiment tables through
:mod:`consumers.handlers.revenuecat_effects`.

What each event type does is the table of docs/contract.md §6 (RevenueCat): ``TEST`` events
are skipped, a ``TEMPORARY_ENTITLEMENT_GRANT`` is acknowledged without effect, every other
type (those to come included) is applied to its customer's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from consumers.errors import PoisonError
from consumers.handlers import attributes, revenuecat_effects
from consumers.handlers.buyers import identifiers
from consumers.handlers.environment import revenuecat_mismatch
from consumers.handlers.purchases import is_work
from consumers.pending import waits
from consumers.types import APPLIED, Context, Event, Result, pending, skipped
from contract.topics import SOURCE_REVENUECAT

__all__ = ["UNKNOWN_ID", "RevenueCatHandler", "identifiers"]

UNKNOWN_ID = "unknown revenue cat id"
TEST_EVENT = "revenuecat test event"
# Dashboard test events name made-up customers: applying one would only park it.
SKIPPED_TYPES = {"TEST": TEST_EVENT}
# A temporary grant during a store outage carries no attributes; the INITIAL_PURCHASE (or
# EXPIRATION) that follows carries the purchase.
WITHOUT_EFFECT = frozenset({"TEMPORARY_ENTITLEMENT_GRANT"})


def _payload(event: Event) -> Mapping[str, Any]:
    if not isinstance(event.data, Mapping):
        raise PoisonError("RevenueCat record value is not a JSON object", event_id=event.id)
    return event.data


@dataclass(slots=True)
class _Row:
    id: int
    attributes: attributes.Attributes
    touched: bool = False


SELECT_ROWS = """
SELECT id, revenue_cat_id, revenue_cat_attributes
FROM user_revenue_cat_ids
WHERE revenue_cat_id = ANY($1::text[])
ORDER BY id
FOR UPDATE
"""

UPDATE_ROWS = """
UPDATE user_revenue_cat_ids AS u
SET revenue_cat_attributes = v.attributes,
    checked_at = greatest(u.checked_at, v.checked_at)
FROM unnest($1::int[], $2::text[], $3::float8[]) AS v(id, attributes, checked_at)
WHERE u.id = v.id
"""


class RevenueCatHandler:
    source = SOURCE_REVENUECAT

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        payloads = [_payload(e) for e in events]
        ids = {i for p in payloads for i in identifiers(p)}
        # Locked in id order so two consumers touching the same rows cannot deadlock.
        rows = await conn.fetch(SELECT_ROWS, sorted(ids))
        by_rc_id: dict[str, _Row] = {}
        states: dict[int, _Row] = {}
        for row in rows:
            state = states.setdefault(
                row["id"], _Row(row["id"], attributes.parse_stored(row["revenue_cat_attributes"]))
            )
            by_rc_id[row["revenue_cat_id"]] = state

        results: list[Result] = []
        effective: list[Event] = []  # applied events whose money and enrolments count
        for event, payload in zip(events, payloads, strict=True):
            if is_work(event) or revenuecat_effects.is_enrollment_work(event):
                results.append(APPLIED)  # parked work: only its effects below
                effective.append(event)
                continue
            kind = payload.get("type")
            if kind in SKIPPED_TYPES:
                results.append(skipped(SKIPPED_TYPES[kind]))
                continue
            reason = revenuecat_mismatch(payload, ctx.environment)
            if reason is not None:
                results.append(skipped(reason))
                continue
            if kind in WITHOUT_EFFECT:
                results.append(APPLIED)
                continue
            matched = {id(s): s for i in identifiers(payload) if (s := by_rc_id.get(i))}
            if not matched:
                keys = (waits.key(waits.REVENUECAT_ID, i) for i in identifiers(payload))
                results.append(pending(UNKNOWN_ID, *keys))
                continue
            event_ms = event.time.timestamp() * 1000.0
            for state in matched.values():
                state.attributes, _ = attributes.merge(
                    state.attributes, payload.get("subscriber_attributes"), event_ms
                )
                state.touched = True
            results.append(APPLIED)
            effective.append(event)

        touched = [s for s in states.values() if s.touched]
        if touched:
            checked_at = ctx.now.timestamp()
            await conn.execute(
                UPDATE_ROWS,
                [s.id for s in touched],
                [attributes.dump(s.attributes) for s in touched],
                [checked_at] * len(touched),
            )
        effects = await revenuecat_effects.apply(conn, effective) if effective else {}
        return [effects.get(e.id, r) for e, r in zip(events, results, strict=True)]
