"""The keys a parked event waits for: ``kind:value``, one kind per target column.

``sql/0004_parked_events.sql`` (with ``sql/0007_email_match_key.sql``) builds the same keys in
its triggers when a target row is inserted (or its key column changes); the two lists must
agree. Values are taken as given: an email's value is its database match key
(:func:`consumers.handlers.emails.email_keys`), never lower-cased here.
"""

from __future__ import annotations

from uuid import UUID

REVENUECAT_ID = "revenuecat_id"  # user_revenue_cat_ids.revenue_cat_id
USER_UID = "user_uid"  # users.uid
USER_EMAIL = "user_email"  # ingest_email_key(users.email)
PROFILE_ID = "profile_id"  # user_profiles.id
PROFILE_EMAIL = "profile_email"  # ingest_email_key(user_profiles.email)
KLAVIYO_ID = "klaviyo_id"  # user_klaviyo_profiles.klaviyo_id
EXPERIMENT = "experiment"  # experiments.name (also woken by a new variant)
PARTICIPATION = "participation"  # user_experiment_participation (user_id/experiment_id)
PARTICIPANT = "participant"  # any participation of user_experiment_participation.user_id

KINDS = (
    REVENUECAT_ID,
    USER_UID,
    USER_EMAIL,
    PROFILE_ID,
    PROFILE_EMAIL,
    KLAVIYO_ID,
    EXPERIMENT,
    PARTICIPATION,
    PARTICIPANT,
)


def key(kind: str, value: str | UUID) -> str:
    return f"{kind}:{value}"


def participation(user_id: UUID, experiment_id: UUID) -> str:
    return f"{PARTICIPATION}:{user_id}/{experiment_id}"
