"""The RevenueCat, Klaviyo and Kit handlers with the runtime's inbox and pending table,
against the real PostgreSQL. Records are built by the ingest side's own record builders."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from consumers.apply import Disposition, apply_in_transaction
from consumers.decode import RawRecord, decode
from consumers.registry import build_handlers
from consumers.types import Context, Event
from contract.records import Record
from contract.topics import topic_name
from core.settings import Settings
from ingest.providers import kit, klaviyo, klaviyo_flow, revenuecat
from ingester.bookkeeping import pending_list, pending_retry
from tests.support import PENDING, retry_for

RECEIVED = "2024-06-01T00:00:00.000Z"
_offsets = iter(range(10**9))


def token() -> str:
    return secrets.token_urlsafe(8)


def events_of(records: Sequence[Record]) -> list[Event]:
    return [
        decode(RawRecord(topic_name("t.", r.stream), 0, next(_offsets), r.key, r.value, r.headers))
        for r in records
    ]


async def apply(
    pool: asyncpg.Pool, records: Sequence[Record], environment: str = "dev"
) -> list[Disposition]:
    ctx = Context(environment=environment, now=datetime.now(UTC))
    report = await apply_in_transaction(
        pool, build_handlers(()), events_of(records), ctx, backoff_max_s=PENDING.backoff_max_s
    )
    return [s.disposition for s in report.settled]


async def retry_pending(pool: asyncpg.Pool, environment: str = "dev") -> dict[str, int]:
    return (await retry_for(pool, build_handlers(()), environment=environment).run()).totals()


# -- builders ---------------------------------------------------------------------------


def rc_event(
    app_user_id: str, ms: int, attributes: dict[str, Any] | None = None, **fields: Any
) -> list[Record]:
    event = {
        "id": fields.pop("id", f"rc-{token()}"),
        "type": fields.pop("type", "SUBSCRIBER_ALIAS"),
        "app_user_id": app_user_id,
        "original_app_user_id": fields.pop("original_app_user_id", app_user_id),
        "aliases": fields.pop("aliases", [app_user_id]),
        "event_timestamp_ms": ms,
        "environment": fields.pop("environment", "SANDBOX"),
        "subscriber_attributes": attributes or {},
        **fields,
    }
    return revenuecat.build_records({"api_version": "1.0", "event": event}, RECEIVED)


def attr(value: str, ms: float) -> dict[str, Any]:
    return {"value": value, "updated_at_ms": ms}


def flow_event(klaviyo_id: str, email: str, when: str, **profile: Any) -> list[Record]:
    body = {
        "event_id": profile.pop("event_id", f"flow-{token()}"),
        "occurred_at": when,
        "profile": {
            "id": klaviyo_id,
            "email": email,
            "timezone": "Europe/Berlin",
            "properties": {"environment": profile.pop("environment", "dev")},
            **profile,
        },
    }
    return klaviyo_flow.build_records(body, RECEIVED)


def consent_event(klaviyo_id: str, channel: str, enabled: bool, when: str) -> list[Record]:
    verb = "subscribed_to" if enabled else "unsubscribed_from"
    element = {
        "external_id": f"kv-{token()}",
        "topic": f"event:klaviyo.{verb}_{channel}_marketing",
        "payload": {
            "data": {
                "type": "event",
                "id": token(),
                "attributes": {"datetime": when},
                "relationships": {"profile": {"data": {"type": "profile", "id": klaviyo_id}}},
            }
        },
    }
    return klaviyo.build_records({"data": [element], "meta": {}}, RECEIVED)


def kit_event(email: str, type_: str, when: str, **subscriber: Any) -> list[Record]:
    event = {
        "id": f"kit-{token()}",
        "type": type_,
        "created": when,
        "data": {"subscriber": {"id": 777, "email_address": email, **subscriber}},
    }
    return kit.build_records({"delivery_id": 1, "events": [event]}, RECEIVED)


# -- database fixtures --------------------------------------------------------------------


async def new_user(pool: asyncpg.Pool, email: str | None = None) -> tuple[int, str]:
    uid = f"u_{token()}"
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ($1, $2) RETURNING id",
        uid,
        email or f"{token()}@example.com",
    )
    return user_id, uid


async def new_rc_id(
    pool: asyncpg.Pool, user_id: int, attributes: dict[str, Any], rc_id: str | None = None
) -> str:
    rc_id = rc_id or f"u_rc_{token()}"
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids (uid, user_id, revenue_cat_id, revenue_cat_attributes,"
        " created_at, checked_at) VALUES ($1, $2, $3, $4, 0, 0)",
        f"iurc_{token()}",
        user_id,
        rc_id,
        orjson.dumps(attributes).decode(),
    )
    return rc_id


async def rc_row(pool: asyncpg.Pool, rc_id: str) -> tuple[dict[str, Any], float]:
    row = await pool.fetchrow(
        "SELECT revenue_cat_attributes, checked_at FROM user_revenue_cat_ids"
        " WHERE revenue_cat_id = $1",
        rc_id,
    )
    assert row is not None
    return orjson.loads(row["revenue_cat_attributes"]), row["checked_at"]


async def stats(pool: asyncpg.Pool) -> dict[tuple[str, bool], int]:
    rows = await pool.fetch("SELECT channel, enabled, users FROM user_notification_setting_stats")
    return {(r["channel"], r["enabled"]): r["users"] for r in rows if r["users"]}


# -- RevenueCat -----------------------------------------------------------------------------


async def test_revenuecat_matches_an_alias_and_merges_attributes(pool: asyncpg.Pool) -> None:
    user_id, _ = await new_user(pool)
    rc_id = await new_rc_id(pool, user_id, {"plan": attr("free", 100), "$email": attr("a@x", 100)})
    records = rc_event(
        "$RCAnonymousID:other",
        5_000,
        {"$email": attr("b@x", 200), "$displayName": attr("Ann", 150)},
        original_app_user_id="$RCAnonymousID:other",
        aliases=["$RCAnonymousID:other", rc_id],
    )
    assert await apply(pool, records) == [Disposition.APPLIED]
    attributes, checked_at = await rc_row(pool, rc_id)
    assert attributes == {
        "plan": attr("free", 100),
        "$email": attr("b@x", 200),
        "$displayName": attr("Ann", 150),
    }
    assert checked_at > 0


async def test_revenuecat_older_value_arriving_later_loses_per_key(pool: asyncpg.Pool) -> None:
    user_id, _ = await new_user(pool)
    rc_id = await new_rc_id(pool, user_id, {})
    newer = rc_event(rc_id, 2_000, {"$email": attr("new@x", 2_000), "plan": attr("pro", 1_000)})
    older = rc_event(rc_id, 1_000, {"$email": attr("old@x", 1_000), "plan": attr("max", 1_500)})
    assert await apply(pool, newer) == [Disposition.APPLIED]
    assert await apply(pool, older) == [Disposition.APPLIED]
    attributes, _ = await rc_row(pool, rc_id)
    assert attributes == {"$email": attr("new@x", 2_000), "plan": attr("max", 1_500)}


async def test_redelivery_with_a_different_body_changes_nothing(pool: asyncpg.Pool) -> None:
    user_id, _ = await new_user(pool)
    rc_id = await new_rc_id(pool, user_id, {})
    first = rc_event(rc_id, 1_000, {"plan": attr("pro", 1_000)}, id="rc-fixed-id")
    tampered = rc_event(rc_id, 9_000, {"plan": attr("evil", 9_000)}, id="rc-fixed-id")
    assert await apply(pool, first) == [Disposition.APPLIED]
    before = await rc_row(pool, rc_id)
    assert await apply(pool, tampered) == [Disposition.DUPLICATE]
    assert await rc_row(pool, rc_id) == before
    # ...and within one batch the first occurrence wins as well.
    again = rc_event(rc_id, 2_000, {"x": attr("1", 2_000)}, id="rc-other-id")
    assert await apply(pool, [*again, *again]) == [Disposition.APPLIED, Disposition.DUPLICATE]


async def test_sandbox_is_skipped_in_production(pool: asyncpg.Pool) -> None:
    user_id, _ = await new_user(pool)
    rc_id = await new_rc_id(pool, user_id, {})
    records = rc_event(rc_id, 1_000, {"plan": attr("pro", 1_000)}, environment="SANDBOX")
    assert await apply(pool, records, environment="production") == [Disposition.SKIPPED]
    assert await rc_row(pool, rc_id) == ({}, 0)
    reason = await pool.fetchval(
        "SELECT reason FROM ingest_skipped WHERE source = 'revenuecat' AND event_id = $1",
        records[0].header("ce_id"),
    )
    assert reason == "environment SANDBOX while production"


async def test_unknown_revenue_cat_id_is_parked_then_applied_by_pending_retry(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    rc_id = f"u_rc_{token()}"
    records = rc_event(rc_id, 1_000, {"plan": attr("pro", 1_000)})
    assert await apply(pool, records) == [Disposition.PENDING]
    # Redelivered while parked: the inbox already knows it.
    assert await apply(pool, records) == [Disposition.DUPLICATE]
    assert await pending_list(settings) == 0
    assert "unknown revenue cat id\t1\t" in capsys.readouterr().out

    assert await retry_pending(pool) == {"applied": 0, "skipped": 0, "pending": 1, "dead": 0}
    user_id, _ = await new_user(pool)
    await new_rc_id(pool, user_id, {}, rc_id)
    assert await pending_retry(settings) == 0
    assert "applied 1, skipped 0, dead 0, still pending 0" in capsys.readouterr().out
    assert (await rc_row(pool, rc_id))[0] == {"plan": attr("pro", 1_000)}
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0


# -- Klaviyo ------------------------------------------------------------------------------


async def test_profile_creation_counts_stats_once_and_not_without_a_profile(
    pool: asyncpg.Pool,
) -> None:
    user_id, uid = await new_user(pool)
    lonely_id, _ = await new_user(pool)
    await pool.executemany(
        "INSERT INTO user_notification_settings (user_id, channel, enabled) VALUES ($1, $2, $3)",
        [(user_id, "email", True), (user_id, "sms", False), (lonely_id, "email", True)],
    )
    assert await stats(pool) == {}  # nobody has a profile yet

    klaviyo_id = f"01{token()}"
    records = flow_event(klaviyo_id, "ignored@example.com", "2024-01-01T00:00:00Z", external_id=uid)
    assert await apply(pool, records) == [Disposition.APPLIED]
    assert await apply(pool, records) == [Disposition.DUPLICATE]
    update = flow_event(klaviyo_id, "new@example.com", "2024-01-02T00:00:00Z", first_name="Ann")
    assert await apply(pool, update) == [Disposition.APPLIED]
    assert await stats(pool) == {("email", True): 1, ("sms", False): 1}

    row = await pool.fetchrow(
        "SELECT uid, user_id, email, first_name, timezone, environment"
        " FROM user_klaviyo_profiles WHERE klaviyo_id = $1",
        klaviyo_id,
    )
    assert row is not None
    assert row["uid"].startswith("ukp_")
    assert (row["user_id"], row["email"], row["first_name"]) == (user_id, "new@example.com", "Ann")
    assert (row["timezone"], row["environment"]) == ("Europe/Berlin", "dev")


async def test_profile_found_by_email_and_other_environment_skipped(pool: asyncpg.Pool) -> None:
    user_id, _ = await new_user(pool, email="Case.Person@Example.com")
    mine = flow_event(f"01{token()}", "case.person@example.com", "2024-01-01T00:00:00Z")
    theirs = flow_event(
        f"01{token()}", "x@example.com", "2024-01-01T00:00:00Z", environment="production"
    )
    assert await apply(pool, [*mine, *theirs]) == [Disposition.APPLIED, Disposition.SKIPPED]
    assert (
        await pool.fetchval(
            "SELECT user_id FROM user_klaviyo_profiles WHERE klaviyo_id = $1",
            mine[0].header("ce_partitionkey"),
        )
        == user_id
    )


async def test_older_profile_event_does_not_overwrite(pool: asyncpg.Pool) -> None:
    _, uid = await new_user(pool)
    klaviyo_id = f"01{token()}"
    newer = flow_event(
        klaviyo_id, "a@example.com", "2024-03-01T00:00:00Z", external_id=uid, first_name="New"
    )
    older = flow_event(
        klaviyo_id, "a@example.com", "2024-02-01T00:00:00Z", external_id=uid, first_name="Old"
    )
    assert await apply(pool, newer) == [Disposition.APPLIED]
    assert await apply(pool, older) == [Disposition.APPLIED]
    name = await pool.fetchval(
        "SELECT first_name FROM user_klaviyo_profiles WHERE klaviyo_id = $1", klaviyo_id
    )
    assert name == "New"


async def test_consent_flip_moves_exactly_one_count(pool: asyncpg.Pool) -> None:
    _, uid = await new_user(pool)
    klaviyo_id = f"01{token()}"
    # The profile and its first consent arrive in one batch, the consent after the profile.
    assert await apply(
        pool,
        [
            *flow_event(klaviyo_id, "c@example.com", "2024-01-01T00:00:00Z", external_id=uid),
            *consent_event(klaviyo_id, "email", True, "2024-01-01T00:00:01Z"),
        ],
    ) == [Disposition.APPLIED, Disposition.APPLIED]
    assert await stats(pool) == {("email", True): 1}

    flip = consent_event(klaviyo_id, "email", False, "2024-01-02T00:00:00Z")
    assert await apply(pool, flip) == [Disposition.APPLIED]
    assert await apply(pool, flip) == [Disposition.DUPLICATE]
    assert await stats(pool) == {("email", False): 1}

    late = consent_event(klaviyo_id, "email", True, "2024-01-01T12:00:00Z")
    assert await apply(pool, late) == [Disposition.APPLIED]
    assert await stats(pool) == {("email", False): 1}


async def test_consent_for_an_unknown_profile_waits_for_it(pool: asyncpg.Pool) -> None:
    _, uid = await new_user(pool)
    klaviyo_id = f"01{token()}"
    consent = consent_event(klaviyo_id, "sms", True, "2024-01-02T00:00:00Z")
    assert await apply(pool, consent) == [Disposition.PENDING]
    reason = await pool.fetchval("SELECT reason FROM ingest_pending")
    assert reason == "unknown klaviyo profile"
    other = consent_event(f"01{token()}", "sms", True, "2024-01-02T00:00:00Z")
    assert await apply(pool, other) == [Disposition.PENDING]

    profile = flow_event(klaviyo_id, "p@example.com", "2024-01-01T00:00:00Z", external_id=uid)
    assert await apply(pool, profile) == [Disposition.APPLIED]
    assert await retry_pending(pool) == {"applied": 1, "skipped": 0, "pending": 1, "dead": 0}
    assert await stats(pool) == {("sms", True): 1}
    assert await pool.fetchval("SELECT attempts FROM ingest_pending") == 1


# -- Kit ------------------------------------------------------------------------------------


async def test_kit_out_of_order_keeps_the_newer_state(pool: asyncpg.Pool) -> None:
    email = f"{token()}@Example.com"
    profile_id = await pool.fetchval(
        "INSERT INTO user_profiles (email) VALUES ($1) RETURNING id", email
    )
    newer = kit_event(email.lower(), "subscriber.unsubscribed", "2024-05-02T00:00:00Z")
    older = kit_event(email.lower(), "subscriber.activated", "2024-05-01T00:00:00Z", state="active")
    assert await apply(pool, newer) == [Disposition.APPLIED]
    assert await apply(pool, older) == [Disposition.APPLIED]
    row = await pool.fetchrow(
        "SELECT kit_subscriber_id, kit_state FROM user_profiles WHERE id = $1", profile_id
    )
    assert row is not None
    assert (row["kit_subscriber_id"], row["kit_state"]) == ("777", "cancelled")


async def test_kit_unknown_email_is_parked(pool: asyncpg.Pool) -> None:
    email = f"{token()}@example.com"
    records = kit_event(email, "subscriber.bounced", "2024-05-01T00:00:00Z")
    assert await apply(pool, records) == [Disposition.PENDING]
    await pool.execute("INSERT INTO user_profiles (email) VALUES ($1)", email)
    assert (await retry_pending(pool))["applied"] == 1
    state = await pool.fetchval("SELECT kit_state FROM user_profiles WHERE email = $1", email)
    assert state == "bounced"


async def test_kit_events_that_change_nothing_we_keep_are_never_parked(
    pool: asyncpg.Pool,
) -> None:
    unknown = f"{token()}@example.com"  # no profile: a state event would wait for it
    tagged = kit_event(unknown, "subscriber.tag_added", "2024-05-01T00:00:00Z", state="active")
    resource = kit.build_records(
        {"events": [{"id": f"kit-{token()}", "type": "tag.created", "data": {"tag": {"id": 5}}}]},
        RECEIVED,
    )
    no_email = kit.build_records(
        {"events": [{"id": f"kit-{token()}", "type": "subscriber.bounced", "data": {}}]},
        RECEIVED,
    )
    assert await apply(pool, [*tagged, *resource, *no_email]) == [
        Disposition.APPLIED,
        Disposition.APPLIED,
        Disposition.SKIPPED,
    ]
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    assert await pool.fetchval("SELECT count(*) FROM user_profiles") == 0
    reason = await pool.fetchval("SELECT reason FROM ingest_skipped WHERE source = 'kit'")
    assert reason == "kit subscriber without email"
