"""Seeding the rows the events target, and reading back the state the oracle predicts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from tests.faults.oracle import Expected, diff
from tests.faults.workload import EXPERIMENTS, VARIANTS, Person

INSERT_USERS = """
INSERT INTO users (uid, email) SELECT * FROM unnest($1::text[], $2::text[])
"""
INSERT_RC_IDS = """
INSERT INTO user_revenue_cat_ids (uid, user_id, revenue_cat_id, revenue_cat_attributes,
                                  created_at, checked_at)
SELECT 'urc_' || u.uid, u.id, v.rc_id, '{}', $3, $3
FROM unnest($1::text[], $2::text[]) AS v(uid, rc_id) JOIN users AS u ON u.uid = v.uid
"""
INSERT_SETTINGS = """
INSERT INTO user_notification_settings (user_id, channel, enabled)
SELECT u.id, 'push', v.enabled
FROM unnest($1::text[], $2::bool[]) AS v(uid, enabled) JOIN users AS u ON u.uid = v.uid
"""
INSERT_PROFILES = """
INSERT INTO user_profiles (id, email) SELECT * FROM unnest($1::uuid[], $2::text[])
"""
INSERT_EXPERIMENT = """
INSERT INTO experiments (name, is_active, status) VALUES ($1, true, 'active') RETURNING id
"""
INSERT_VARIANT = "INSERT INTO variants (experiment_id, name) VALUES ($1, $2)"


async def seed_people(conn: asyncpg.Connection, people: Sequence[Person]) -> None:
    """The users, RevenueCat ids, settings and user profiles of ``people``, in one
    transaction (the way a sign-up would create them)."""
    if not people:
        return
    async with conn.transaction():
        await conn.execute(INSERT_USERS, [p.uid for p in people], [p.email for p in people])
        await conn.execute(
            INSERT_RC_IDS, [p.uid for p in people], [p.rc_id for p in people], time.time()
        )
        with_push = [p for p in people if p.push_setting is not None]
        await conn.execute(
            INSERT_SETTINGS, [p.uid for p in with_push], [p.push_setting for p in with_push]
        )
        await conn.execute(
            INSERT_PROFILES, [p.profile_id for p in people], [p.email for p in people]
        )


async def seed_experiments(conn: asyncpg.Connection) -> None:
    for name in EXPERIMENTS:
        experiment_id = await conn.fetchval(INSERT_EXPERIMENT, name)
        for variant in VARIANTS:
            await conn.execute(INSERT_VARIANT, experiment_id, variant)


async def seed(dsn: str, people: Sequence[Person], *, late: bool) -> None:
    """Seed the experiments and the people (only the early ones unless ``late``)."""
    conn = await asyncpg.connect(dsn)
    try:
        await seed_experiments(conn)
        await seed_people(conn, [p for p in people if late or not p.late])
    finally:
        await conn.close()


async def seed_late(dsn: str, people: Sequence[Person]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await seed_people(conn, [p for p in people if p.late])
    finally:
        await conn.close()


async def processed_ids(conn: asyncpg.Connection) -> set[tuple[str, str]]:
    """Every (source, event id) the consumers have recorded in any way."""
    rows = await conn.fetch(
        "SELECT source, event_id FROM ingest_inbox UNION SELECT source, event_id FROM"
        " ingest_pending UNION SELECT source, event_id FROM ingest_skipped"
    )
    return {(r["source"], r["event_id"]) for r in rows}


async def read(conn: asyncpg.Connection, people: Sequence[Person]) -> Expected:
    """The database, shaped like :class:`Expected`."""
    out = Expected()
    await _read_people(conn, people, out)
    await _read_experiments(conn, out)
    for r in await conn.fetch("SELECT source, event_id FROM ingest_pending"):
        out.pending.add((r["source"], r["event_id"]))
    for r in await conn.fetch("SELECT source, event_id FROM ingest_skipped"):
        out.skipped.add((r["source"], r["event_id"]))
    return out


async def _read_people(conn: asyncpg.Connection, people: Sequence[Person], out: Expected) -> None:
    rc_ids = {p.rc_id for p in people}
    for r in await conn.fetch(
        "SELECT revenue_cat_id, revenue_cat_attributes FROM user_revenue_cat_ids"
    ):
        if r["revenue_cat_id"] in rc_ids:
            out.rc_attributes[r["revenue_cat_id"]] = orjson.loads(r["revenue_cat_attributes"])
    for r in await conn.fetch(
        "SELECT k.*, u.uid AS user_uid FROM user_klaviyo_profiles k"
        " JOIN users u ON u.id = k.user_id"
    ):
        out.klaviyo_profiles[r["klaviyo_id"]] = (
            r["user_uid"],
            r["email"],
            r["phone_number"],
            r["first_name"],
            r["last_name"],
            r["timezone"],
            r["environment"],
        )
    for r in await conn.fetch(
        "SELECT u.uid, s.channel, s.enabled FROM user_notification_settings s"
        " JOIN users u ON u.id = s.user_id"
    ):
        out.settings[(r["uid"], r["channel"])] = r["enabled"]
    for r in await conn.fetch("SELECT * FROM user_notification_setting_stats WHERE users <> 0"):
        out.stats[(r["channel"], r["enabled"])] = r["users"]
    emails = [p.email for p in people]
    for r in await conn.fetch(
        "SELECT email, kit_subscriber_id, kit_state FROM user_profiles WHERE email = ANY($1)",
        emails,
    ):
        out.kit[r["email"]] = (r["kit_subscriber_id"], r["kit_state"])


async def _read_experiments(conn: asyncpg.Connection, out: Expected) -> None:
    names = {
        r["id"]: r["name"]
        for r in await conn.fetch(
            "SELECT id, name FROM experiments UNION ALL SELECT id, name FROM variants"
        )
    }
    for r in await conn.fetch("SELECT * FROM user_experiment_participation"):
        out.participations[(str(r["user_id"]), names[r["experiment_id"]])] = (
            names[r["variant_id"]],
            r["first_exposure_date"],
            r["total_impressions"],
            r["has_converted"],
            r["first_conversion_date"],
            r["conversion_within_window"],
        )
    for r in await conn.fetch("SELECT * FROM impressions"):
        out.impressions[str(r["id"])] = (
            str(r["user_id"]),
            names[r["experiment_id"]],
            names[r["variant_id"]],
            r["impression_at"],
            r["user_was_eligible"],
        )
    keys: dict[Any, str] = {}
    for r in await conn.fetch("SELECT *, details::text AS details_text FROM conversions"):
        key = keys[r["id"]] = _conversion_key(r, names[r["experiment_id"]])
        out.conversions[key] = (
            str(r["user_id"]),
            names[r["experiment_id"]],
            names[r["variant_id"]],
            r["conversion_type"],
            r["conversion_value"],
            r["time_to_convert"],
            r["is_first_conversion_for_experiment"],
            r["original_exposure_date"],
        )
    for r in await conn.fetch("SELECT * FROM conversion_attribution"):
        out.attributions[keys.get(r["conversion_id"], str(r["conversion_id"]))] = (
            str(r["user_id"]),
            names[r["experiment_id"]],
            names[r["variant_id"]],
            r["attribution_method"],
            r["time_to_conversion_hours"],
            r["conversion_value_attributed"],
        )


def _conversion_key(row: asyncpg.Record, experiment: str) -> str:
    """First-party conversions by their event id; RevenueCat purchases and refunds by the
    events they come from and the experiment (the oracle knows no experiment ids)."""
    details = orjson.loads(row["details_text"]) if row["details_text"] else None
    if not isinstance(details, dict) or "revenuecat_event_id" not in details:
        return str(row["id"])
    if row["conversion_type"] == "refund":
        refunded = details.get("refunded_event_id")
        return f"refund:{details['revenuecat_event_id']}/{refunded}/{experiment}"
    return f"purchase:{details['revenuecat_event_id']}/{experiment}"


@dataclass(frozen=True, slots=True)
class Comparison:
    rows: int  # expected rows compared
    missing: dict[str, list[Any]]
    extra: dict[str, list[Any]]
    different: dict[str, list[Any]]

    @property
    def losses(self) -> int:
        return sum(map(len, self.missing.values())) + sum(map(len, self.different.values()))

    @property
    def duplicates(self) -> int:
        return sum(map(len, self.extra.values()))

    def summary(self, limit: int = 3) -> str:
        parts = []
        for name, found in (
            ("missing", self.missing),
            ("extra", self.extra),
            ("different", self.different),
        ):
            for table, keys in found.items():
                if keys:
                    parts.append(f"{name} {table}: {len(keys)} e.g. {keys[:limit]}")
        return "; ".join(parts) or "identical"


def compare(expected: Expected, actual: Expected) -> Comparison:
    missing, extra, different = {}, {}, {}
    rows = 0
    wanted, found = expected.tables(), actual.tables()
    for table, rows_expected in wanted.items():
        m, e, d = diff(rows_expected, found[table])
        rows += len(rows_expected)
        missing[table], extra[table], different[table] = m, e, d
    # A counter that is too high is a duplicate effect, too low a lost one.
    for key in list(different["stats"]):
        if found["stats"][key] > wanted["stats"][key]:
            different["stats"].remove(key)
            extra["stats"].append(key)
    for key in list(different["participations"]):
        if found["participations"][key][2] > wanted["participations"][key][2]:
            different["participations"].remove(key)
            extra["participations"].append(key)
    return Comparison(rows, missing, extra, different)


def legacy_ids(actual_ids: set[tuple[str, str]], known: set[tuple[str, str]]) -> set[Any]:
    return {k for k in actual_ids if k[0] == "kit" and k not in known}


def as_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text)
