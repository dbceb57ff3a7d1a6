"""Klaviyo events -> ``user_klaviyo_profiles`` and ``user_notification_settings``
(docs/contract.md §6, seed 000).

Flow-webhook profiles upsert the profile by ``klaviyo_id``; a new row needs its user, found
by ``external_id`` (= ``users.uid``) or else by email (the database's match key,
:mod:`consumers.handlers.emails`). Consent events set the notification
setting of the profile's user. The stats table follows through database triggers, so
creating a profile counts the user's settings once and a consent flip moves one count.

Ordering: the event time last applied is kept per profile and per (user, channel); an event
older than that is acknowledged without effect. The whole batch is simulated in memory in
offset order (a consent event may follow the creation of its profile in the same batch), then
written with one statement per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from consumers.handlers import klaviyo_store as db
from consumers.handlers.emails import email_keys
from consumers.handlers.environment import property_mismatch
from consumers.handlers.klaviyo_events import (
    FLOW_TYPE,
    Consent,
    FlowProfile,
    parse_consent,
    parse_flow,
)
from consumers.pending import waits
from consumers.types import APPLIED, Context, Event, Result, pending, skipped
from contract.topics import SOURCE_KLAVIYO

UNKNOWN_USER = "unknown user"
UNKNOWN_PROFILE = "unknown klaviyo profile"
DEFAULT_TIMEZONE = "UTC"  # the column is NOT NULL; Klaviyo leaves it empty until it geolocates


def _stale(event_time: datetime, applied: datetime | None) -> bool:
    return applied is not None and event_time < applied


class _State:
    """The state one batch reads, changes in memory, and writes back."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.users = db.Users({}, {}, {})
        self.email_keys: dict[str, str] = {}
        self.by_klaviyo_id: dict[str, db.Profile] = {}
        self.by_user: dict[int, db.Profile] = {}
        self.profile_versions: dict[str, datetime] = {}
        self.setting_versions: dict[tuple[int, str], datetime] = {}
        self.new_profile_versions: dict[str, datetime] = {}
        self.settings: dict[tuple[int, str], bool] = {}

    async def load(
        self, conn: asyncpg.Connection, flows: Sequence[FlowProfile], consents: Sequence[Consent]
    ) -> None:
        """Lock users, then profiles, then read the versions: each read that decides comes
        after the locks that keep it true (docs/schema.md, "Lock order")."""
        self.email_keys = await email_keys(conn, (f.email for f in flows if f.email))
        klaviyo_ids = {f.klaviyo_id for f in flows} | {c.profile_id for c in consents}
        self.users = await db.lock_users(
            conn,
            [f.external_id for f in flows if f.external_id],
            self.email_keys.values(),
            klaviyo_ids,
        )
        user_ids = set(self.users.email_of)
        for profile in await db.select_profiles(conn, klaviyo_ids, user_ids):
            self._index(profile)
        await db.lock_more_users(conn, self.users, self.by_user)
        self.profile_versions, self.setting_versions = await db.select_versions(
            conn,
            klaviyo_ids | set(self.by_klaviyo_id),
            user_ids | set(self.by_user),
        )

    def _index(self, profile: db.Profile) -> None:
        self.by_klaviyo_id[profile.klaviyo_id] = profile
        self.by_user[profile.user_id] = profile

    def _user_of(self, flow: FlowProfile) -> int | None:
        if flow.external_id and flow.external_id in self.users.by_uid:
            return self.users.by_uid[flow.external_id]
        if flow.email:
            return self.users.by_email.get(self.email_keys[flow.email])
        return None

    def apply_flow(self, event: Event, flow: FlowProfile) -> Result:
        reason = property_mismatch(flow.environment, self.ctx.environment, "profile environment")
        if reason is not None:
            return skipped(reason)
        target = self.by_klaviyo_id.get(flow.klaviyo_id)
        user_id = None
        if target is None:
            user_id = self._user_of(flow)
            target = self.by_user.get(user_id) if user_id is not None else None
        if target is None and user_id is None:
            return pending(UNKNOWN_USER, *self._user_keys(flow))
        versions = [self.profile_versions.get(flow.klaviyo_id)]
        if target is not None:
            versions.append(self.profile_versions.get(target.klaviyo_id))
        if any(_stale(event.time, v) for v in versions):
            return APPLIED  # an older view of the profile than the one stored
        if target is None and user_id is not None:
            target = db.Profile(
                id=None,
                uid=db.new_uid(),
                klaviyo_id=flow.klaviyo_id,
                user_id=user_id,
                email=flow.email or self.users.email_of[user_id],
                phone_number=None,
                first_name=None,
                last_name=None,
                timezone=flow.timezone or DEFAULT_TIMEZONE,
                environment=flow.environment or self.ctx.environment,
            )
        if target is not None:
            self._update(target, flow)
        self.profile_versions[flow.klaviyo_id] = event.time
        self.new_profile_versions[flow.klaviyo_id] = event.time
        return APPLIED

    def _user_keys(self, flow: FlowProfile) -> list[str]:
        keys = [waits.key(waits.KLAVIYO_ID, flow.klaviyo_id)]
        if flow.external_id:
            keys.append(waits.key(waits.USER_UID, flow.external_id))
        if flow.email:
            keys.append(waits.key(waits.USER_EMAIL, self.email_keys[flow.email]))
        return keys

    def _update(self, profile: db.Profile, flow: FlowProfile) -> None:
        if profile.klaviyo_id != flow.klaviyo_id:
            # Klaviyo merged or recreated the person: the user keeps one profile row.
            self.by_klaviyo_id.pop(profile.klaviyo_id, None)
            profile.klaviyo_id = flow.klaviyo_id
        profile.email = flow.email or profile.email
        if flow.has("phone_number"):
            profile.phone_number = flow.phone_number
        if flow.has("first_name"):
            profile.first_name = flow.first_name
        if flow.has("last_name"):
            profile.last_name = flow.last_name
        profile.timezone = flow.timezone or profile.timezone
        profile.environment = flow.environment or profile.environment
        profile.dirty = True
        self._index(profile)

    def apply_consent(self, event: Event, consent: Consent) -> Result:
        profile = self.by_klaviyo_id.get(consent.profile_id)
        if profile is None:
            return pending(UNKNOWN_PROFILE, waits.key(waits.KLAVIYO_ID, consent.profile_id))
        reason = property_mismatch(profile.environment, self.ctx.environment, "profile environment")
        if reason is not None:
            return skipped(reason)
        key = (profile.user_id, consent.channel)
        if _stale(event.time, self.setting_versions.get(key)):
            return APPLIED
        self.settings[key] = consent.enabled
        self.setting_versions[key] = event.time
        return APPLIED

    async def write(self, conn: asyncpg.Connection) -> None:
        now = self.ctx.now.timestamp()
        await db.write_profiles(conn, self.by_user.values(), now)
        await db.write_versions(conn, self.new_profile_versions)
        await db.write_settings(conn, self.settings, self.setting_versions)


class KlaviyoHandler:
    source = SOURCE_KLAVIYO

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        parsed: list[FlowProfile | Consent | None] = [
            parse_flow(e) if e.type == FLOW_TYPE else parse_consent(e) for e in events
        ]
        batch = _State(ctx)
        await batch.load(
            conn,
            [p for p in parsed if isinstance(p, FlowProfile)],
            [p for p in parsed if isinstance(p, Consent)],
        )
        results: list[Result] = []
        for event, change in zip(events, parsed, strict=True):
            if isinstance(change, FlowProfile):
                results.append(batch.apply_flow(event, change))
            elif isinstance(change, Consent):
                results.append(batch.apply_consent(event, change))
            else:
                results.append(APPLIED)  # other topics are acknowledged without effect
        await batch.write(conn)
        return results
