"""The reads and batched writes of the Klaviyo handler; one statement per table per batch."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

UID_PREFIX = "ukp_"  # seed 000: user_klaviyo_profiles.uid uses the uid prefix `ukp`


def new_uid() -> str:
    return UID_PREFIX + secrets.token_urlsafe(16)


@dataclass(slots=True)
class Profile:
    """A ``user_klaviyo_profiles`` row as the batch leaves it; ``id`` None until inserted."""

    id: int | None
    uid: str
    klaviyo_id: str
    user_id: int
    email: str
    phone_number: str | None
    first_name: str | None
    last_name: str | None
    timezone: str
    environment: str
    dirty: bool = False


# The users of the batch, locked before anything of theirs is touched (docs/schema.md,
# "Lock order"): the candidates for a new profile (by uid, or by email key) and the owners of
# the profiles the events name. The stats triggers lock the same rows once the profiles and
# settings are written; taking them first, in id order, is what keeps a web-app transaction
# that updated a user and then writes the user's settings from deadlocking with this one.
LOCK_USERS = """
SELECT id, uid, email, ingest_email_key(email) AS email_key
FROM users
WHERE uid = ANY($1::text[])
   OR ingest_email_key(email) = ANY($2::text[])
   OR id = ANY(ARRAY(SELECT user_id FROM user_klaviyo_profiles WHERE klaviyo_id = ANY($3::text[])))
ORDER BY id
FOR NO KEY UPDATE
"""

# A profile moved to another user after LOCK_USERS read it (the web app changed its user_id):
# that user is locked too, before the versions are read.
LOCK_MORE_USERS = """
SELECT id FROM users WHERE id = ANY($1::int[]) ORDER BY id FOR NO KEY UPDATE
"""


@dataclass(slots=True)
class Users:
    by_uid: dict[str, int]
    by_email: dict[str, int]  # by email key; the oldest user when several share an address
    email_of: dict[int, str]  # the candidates for a new profile (found by uid or email)
    locked: set[int] = field(default_factory=set)


async def lock_users(
    conn: asyncpg.Connection,
    uids: Iterable[str],
    email_keys: Iterable[str],
    klaviyo_ids: Iterable[str],
) -> Users:
    users = Users({}, {}, {})
    wanted_uids, wanted_keys = set(uids), set(email_keys)
    rows = await conn.fetch(
        LOCK_USERS, sorted(wanted_uids), sorted(wanted_keys), sorted(set(klaviyo_ids))
    )
    for row in rows:
        users.locked.add(row["id"])
        if row["uid"] in wanted_uids:
            users.by_uid[row["uid"]] = row["id"]
            users.email_of[row["id"]] = row["email"]
        if row["email_key"] in wanted_keys:
            users.by_email.setdefault(row["email_key"], row["id"])
            users.email_of[row["id"]] = row["email"]
    return users


async def lock_more_users(conn: asyncpg.Connection, users: Users, user_ids: Iterable[int]) -> None:
    more = sorted(set(user_ids) - users.locked)
    if more:
        await conn.fetch(LOCK_MORE_USERS, more)
        users.locked.update(more)


SELECT_PROFILES = """
SELECT id, uid, klaviyo_id, user_id, email, phone_number, first_name, last_name, timezone,
       environment
FROM user_klaviyo_profiles
WHERE klaviyo_id = ANY($1::text[]) OR user_id = ANY($2::int[])
ORDER BY id
FOR UPDATE
"""


async def select_profiles(
    conn: asyncpg.Connection, klaviyo_ids: Iterable[str], user_ids: Iterable[int]
) -> list[Profile]:
    rows = await conn.fetch(SELECT_PROFILES, sorted(set(klaviyo_ids)), sorted(set(user_ids)))
    return [
        Profile(
            id=r["id"],
            uid=r["uid"],
            klaviyo_id=r["klaviyo_id"],
            user_id=r["user_id"],
            email=r["email"],
            phone_number=r["phone_number"],
            first_name=r["first_name"],
            last_name=r["last_name"],
            timezone=r["timezone"],
            environment=r["environment"],
        )
        for r in rows
    ]


SELECT_VERSIONS = """
SELECT 'p' AS kind, klaviyo_id AS key, NULL::int AS user_id, event_time
FROM ingest_klaviyo_profile_versions WHERE klaviyo_id = ANY($1::text[])
UNION ALL
SELECT 's', channel, user_id, event_time
FROM ingest_notification_setting_versions WHERE user_id = ANY($2::int[])
"""


async def select_versions(
    conn: asyncpg.Connection, klaviyo_ids: Iterable[str], user_ids: Iterable[int]
) -> tuple[dict[str, datetime], dict[tuple[int, str], datetime]]:
    """Event times last applied per profile and per (user, channel) setting."""
    profiles: dict[str, datetime] = {}
    settings: dict[tuple[int, str], datetime] = {}
    for row in await conn.fetch(SELECT_VERSIONS, sorted(set(klaviyo_ids)), sorted(set(user_ids))):
        if row["kind"] == "p":
            profiles[row["key"]] = row["event_time"]
        else:
            settings[(row["user_id"], row["key"])] = row["event_time"]
    return profiles, settings


UPDATE_PROFILES = """
UPDATE user_klaviyo_profiles AS p
SET klaviyo_id = v.klaviyo_id, email = v.email, phone_number = v.phone_number,
    first_name = v.first_name, last_name = v.last_name, timezone = v.timezone,
    environment = v.environment, updated_at = v.now
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::float8[], $11::int[])
    AS v(uid, klaviyo_id, user_id, email, phone_number, first_name, last_name, timezone,
         environment, now, id)
WHERE p.id = v.id
"""

INSERT_PROFILES = """
INSERT INTO user_klaviyo_profiles
    (uid, klaviyo_id, user_id, email, phone_number, first_name, last_name, timezone,
     environment, created_at, updated_at)
SELECT uid, klaviyo_id, user_id, email, phone_number, first_name, last_name, timezone,
       environment, now, now
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::float8[])
    AS v(uid, klaviyo_id, user_id, email, phone_number, first_name, last_name, timezone,
         environment, now)
"""


def _columns(profiles: Sequence[Profile], now: float) -> list[list[object]]:
    return [
        [p.uid for p in profiles],
        [p.klaviyo_id for p in profiles],
        [p.user_id for p in profiles],
        [p.email for p in profiles],
        [p.phone_number for p in profiles],
        [p.first_name for p in profiles],
        [p.last_name for p in profiles],
        [p.timezone for p in profiles],
        [p.environment for p in profiles],
        [now] * len(profiles),
    ]


async def write_profiles(conn: asyncpg.Connection, profiles: Iterable[Profile], now: float) -> None:
    """Update the changed rows, then insert the new ones in one statement (the stats trigger
    then counts each new profile's user once)."""
    changed = [p for p in profiles if p.dirty]
    updates = [p for p in changed if p.id is not None]
    inserts = [p for p in changed if p.id is None]
    if updates:
        await conn.execute(UPDATE_PROFILES, *_columns(updates, now), [p.id for p in updates])
    if inserts:
        await conn.execute(INSERT_PROFILES, *_columns(inserts, now))


UPSERT_PROFILE_VERSIONS = """
INSERT INTO ingest_klaviyo_profile_versions AS v (klaviyo_id, event_time)
SELECT * FROM unnest($1::text[], $2::timestamptz[])
ON CONFLICT (klaviyo_id) DO UPDATE
SET event_time = greatest(v.event_time, EXCLUDED.event_time)
"""

UPSERT_SETTINGS = """
INSERT INTO user_notification_settings AS s (user_id, channel, enabled)
SELECT * FROM unnest($1::int[], $2::text[], $3::bool[])
ON CONFLICT (user_id, channel) DO UPDATE
SET enabled = EXCLUDED.enabled, updated_at = extract(epoch FROM now())
WHERE s.enabled IS DISTINCT FROM EXCLUDED.enabled
"""

UPSERT_SETTING_VERSIONS = """
INSERT INTO ingest_notification_setting_versions AS v (user_id, channel, event_time)
SELECT * FROM unnest($1::int[], $2::text[], $3::timestamptz[])
ON CONFLICT (user_id, channel) DO UPDATE
SET event_time = greatest(v.event_time, EXCLUDED.event_time)
"""


async def write_versions(conn: asyncpg.Connection, versions: dict[str, datetime]) -> None:
    if versions:
        keys = sorted(versions)
        await conn.execute(UPSERT_PROFILE_VERSIONS, keys, [versions[k] for k in keys])


async def write_settings(
    conn: asyncpg.Connection,
    settings: dict[tuple[int, str], bool],
    versions: dict[tuple[int, str], datetime],
) -> None:
    if not settings:
        return
    keys = sorted(settings)
    users = [u for u, _ in keys]
    channels = [c for _, c in keys]
    await conn.execute(UPSERT_SETTINGS, users, channels, [settings[k] for k in keys])
    await conn.execute(UPSERT_SETTING_VERSIONS, users, channels, [versions[k] for k in keys])
