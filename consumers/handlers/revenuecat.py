"""RevenueCat events -> ``user_revenue_cat_ids`` (docs/contract.md §6, seed 001).

The row is the one whose ``revenue_cat_id`` is the event's ``app_user_id``,
``original_app_user_id`` or one of its ``aliases`` (every such row when accounts were merged:
they describe the same RevenueCat customer). Subscriber attributes merge key by key, the
later ``updated_at_ms`` winning, so the attributes themselves carry the ordering; purchases
then become experiment conversions through :func:`consumers.handlers.purchases.record_purchases`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from consumers.errors import PoisonError
from consumers.handlers import attributes
from consumers.handlers.environment import revenuecat_mismatch
from consumers.handlers.purchases import is_work, record_purchases, work_event
from consumers.pending import waits
from consumers.types import (
    APPLIED,
    Context,
    Event,
    Outcome,
    PendingEvent,
    Result,
    pending,
    skipped,
)
from contract.topics import SOURCE_REVENUECAT

UNKNOWN_ID = "unknown revenue cat id"


def identifiers(event: Mapping[str, Any]) -> list[str]:
    """The revenue cat ids an event speaks for, most specific first, without repeats.
    A TRANSFER names none of its own; it touches the ids on both sides."""
    found: list[str] = []
    candidates: list[Any] = [event.get("app_user_id"), event.get("original_app_user_id")]
    for key in ("aliases", "transferred_to", "transferred_from"):
        values = event.get(key)
        if isinstance(values, list):
            candidates.extend(values)
    for value in candidates:
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found


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
        for event, payload in zip(events, payloads, strict=True):
            if is_work(event):
                results.append(APPLIED)  # parked purchase work: only its conversions below
                continue
            reason = revenuecat_mismatch(payload, ctx.environment)
            if reason is not None:
                results.append(skipped(reason))
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

        touched = [s for s in states.values() if s.touched]
        if touched:
            checked_at = ctx.now.timestamp()
            await conn.execute(
                UPDATE_ROWS,
                [s.id for s in touched],
                [attributes.dump(s.attributes) for s in touched],
                [checked_at] * len(touched),
            )
        applied = [e for e, r in zip(events, results, strict=True) if r.outcome is Outcome.APPLIED]
        purchases = await record_purchases(conn, applied, ctx) if applied else {}
        return [_settle(e, r, purchases) for e, r in zip(events, results, strict=True)]


def _settle(event: Event, result: Result, purchases: Mapping[str, Result]) -> Result:
    """Parked purchase work waits again as itself; a live purchase whose conversion must
    wait leaves its work as a follow-up, an event of its own the runtime parks."""
    if is_work(event):
        return purchases.get(event.id, result)
    conversion = purchases.get(event.id)
    if conversion is None or conversion.outcome is not Outcome.PENDING:
        return result
    work = PendingEvent(work_event(event), conversion.reason or "", conversion.waits_for)
    return replace(result, follow_up=(work,))
