"""Kit events -> ``user_profiles.kit_subscriber_id`` and ``kit_state`` (docs/contract.md §6,
seed 002), matched by lower-cased email.

Ordering: ``ingest_kit_versions`` keeps the (event time, event id) last applied per profile;
an event at or before it changes nothing, so a late older event never overwrites a newer
state, and two events with the same time resolve the same way in any arrival order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from consumers.handlers.kit_events import KitChange, parse_kit
from consumers.pending import waits
from consumers.types import APPLIED, Context, Event, Result, pending
from contract.topics import SOURCE_KIT

UNKNOWN_EMAIL = "unknown email"

SELECT_PROFILES = """
SELECT p.id, lower(p.email) AS email, p.kit_subscriber_id, p.kit_state,
       v.event_time, v.event_id
FROM user_profiles AS p
LEFT JOIN ingest_kit_versions AS v ON v.user_profile_id = p.id
WHERE lower(p.email) = ANY($1::text[])
ORDER BY p.id
FOR NO KEY UPDATE OF p
"""

UPDATE_PROFILES = """
UPDATE user_profiles AS p
SET kit_subscriber_id = v.subscriber_id, kit_state = v.state, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(id, subscriber_id, state)
WHERE p.id = v.id
"""

UPSERT_VERSIONS = """
INSERT INTO ingest_kit_versions AS k (user_profile_id, event_time, event_id)
SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[])
ON CONFLICT (user_profile_id) DO UPDATE
SET event_time = EXCLUDED.event_time, event_id = EXCLUDED.event_id
WHERE (k.event_time, k.event_id) < (EXCLUDED.event_time, EXCLUDED.event_id)
"""


@dataclass(slots=True)
class _Profile:
    id: UUID
    subscriber_id: str | None
    state: str | None
    version: tuple[datetime, str] | None


class KitHandler:
    source = SOURCE_KIT

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        changes = [parse_kit(e) for e in events]
        by_email: dict[str, list[_Profile]] = {}
        wanted = sorted({c.email for c in changes if isinstance(c, KitChange)})
        for row in await conn.fetch(SELECT_PROFILES, wanted):
            version = (row["event_time"], row["event_id"]) if row["event_time"] else None
            by_email.setdefault(row["email"], []).append(
                _Profile(row["id"], row["kit_subscriber_id"], row["kit_state"], version)
            )

        changed: dict[UUID, _Profile] = {}
        results: list[Result] = []
        for event, change in zip(events, changes, strict=True):
            if not isinstance(change, KitChange):
                results.append(change)  # nothing we keep: its result is known already
                continue
            profiles = by_email.get(change.email)
            if not profiles:
                results.append(pending(UNKNOWN_EMAIL, waits.key(waits.PROFILE_EMAIL, change.email)))
                continue
            version = (event.time, event.id)
            for profile in profiles:
                if profile.version is not None and version <= profile.version:
                    continue  # the stored state is newer
                profile.subscriber_id = change.subscriber_id or profile.subscriber_id
                profile.state = change.state or profile.state
                profile.version = version
                changed[profile.id] = profile
            results.append(APPLIED)

        if changed:
            dirty = list(changed.values())
            ids = [p.id for p in dirty]
            await conn.execute(
                UPDATE_PROFILES, ids, [p.subscriber_id for p in dirty], [p.state for p in dirty]
            )
            times, event_ids = zip(*(p.version or (ctx.now, "") for p in dirty), strict=True)
            await conn.execute(UPSERT_VERSIONS, ids, list(times), list(event_ids))
        return results
