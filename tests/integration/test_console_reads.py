"""What the console reads, against the real database and broker: a person's keys across both
identity worlds, where an event is by id, and a consumer group's lag seen from outside
(without joining the group or disturbing it)."""

from __future__ import annotations

import asyncpg
import pytest

from consumers import db, lookup
from consumers.lag import group_lag
from consumers.topic_reader import assign_all
from contract.topics import topic_name
from core.kafka import make_consumer
from core.settings import Settings
from tests.integration.test_consumers_runner import kit_records
from tests.support import publish

PROFILE = "5a3b0c1e-8f2d-4c6a-9b7e-0d1f2a3b4c5d"
# The partition keys of Ann's events: RevenueCat id, Klaviyo profile, email (Kit), profile id.
KEYS = {"rc_ann", "k_ann", "u_ann", "ann@example.com", PROFILE}


@pytest.fixture
async def person(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO users (id, uid, email) VALUES (5, 'u_ann', 'Ann@Example.com');
        INSERT INTO user_revenue_cat_ids
            (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)
            VALUES ('urc', 5, 'rc_ann', '{}', 0, 0);
        INSERT INTO user_klaviyo_profiles (uid, klaviyo_id, user_id, email, timezone,
            environment, created_at, updated_at)
            VALUES ('ukp', 'k_ann', 5, 'ann@example.com', 'UTC', 'dev', 0, 0);
        """
    )
    await pool.execute(
        "INSERT INTO user_profiles (id, email) VALUES ($1, 'ann@example.com')", PROFILE
    )


async def test_emails_match_by_the_database_key(pool: asyncpg.Pool) -> None:
    """A person whose address differs between the two identity worlds by more than ASCII case
    (the database's key folds ß to ss) is one person; the Kit key is the case-folded email."""
    if await pool.fetchval("SELECT ingest_email_key('ß')") != "ss":
        pytest.skip("this server's email key folds only simple case mappings (docs/schema.md)")
    await pool.execute(
        """
        INSERT INTO users (id, uid, email) VALUES (7, 'u_jo', 'Jo.Straße@Example.com');
        INSERT INTO user_revenue_cat_ids
            (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)
            VALUES ('urc_jo', 7, 'rc_jo', '{}', 0, 0);
        """
    )
    await pool.execute(
        "INSERT INTO user_profiles (id, email) VALUES ($1, 'JO.STRASSE@example.com')", PROFILE
    )
    async with db.connection(pool) as conn:
        by_email = await lookup.user_keys(conn, "jo.strasse@EXAMPLE.com")
        by_rc = await lookup.user_keys(conn, "rc_jo")
    expected = {"u_jo", "rc_jo", "jo.strasse@example.com", PROFILE}
    assert set(by_email) >= expected
    assert set(by_rc) >= expected


@pytest.mark.parametrize(
    "term",
    [
        pytest.param("rc_ann", id="a RevenueCat id"),
        pytest.param("ANN@example.com", id="an email, any case"),
        pytest.param("u_ann", id="a users uid"),
        pytest.param("5", id="a users id"),
        pytest.param("k_ann", id="a Klaviyo profile id"),
        pytest.param(PROFILE, id="a user_profiles id"),
    ],
)
async def test_any_key_of_a_person_finds_all_of_them(
    pool: asyncpg.Pool, person: None, term: str
) -> None:
    async with db.connection(pool) as conn:
        keys = await lookup.user_keys(conn, term)
    assert set(keys) >= KEYS


async def test_an_event_is_found_where_it_is_by_id(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO ingest_inbox (source, event_id, topic, partition, "offset", partition_key)
            VALUES ('kit', 'e1', 't.kit', 1, 7, 'ann@example.com');
        INSERT INTO ingest_pending (source, event_id, event_type, event_time, partition_key,
            payload, reason, topic, partition, "offset")
            VALUES ('kit', 'e1', 'kit.x', now(), 'ann@example.com', '{}', 'unknown email',
                    't.kit', 1, 7);
        """
    )
    async with db.connection(pool) as conn:
        (found,) = await lookup.by_id(conn, "e1", ["revenuecat", "kit"])
        _, by_user = await lookup.by_user(conn, "ANN@example.com")
    assert found.now.state == "parked" and found.now.detail == "unknown email (0 retries)"
    assert {s.state for s in found.sightings} == {"applied", "parked"}
    assert found.position is not None and (found.position.topic, found.position.offset) == (
        "t.kit",
        7,
    )
    assert [e.event_id for e in by_user] == ["e1"]


async def test_a_groups_lag_is_read_without_joining_it(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers is not None
    topic = topic_name(settings.topic_prefix, "kit")
    await publish(settings.kafka_bootstrap_servers, settings.topic_prefix, kit_records("a@b.co", 5))
    member = make_consumer(settings, group_id="console-lag-test")
    await member.start()
    try:
        tps = await assign_all(member, topic)
        await member.commit({tp: 0 for tp in tps})
        lag = await group_lag(settings, "console-lag-test", [topic, "no.such.topic"])
    finally:
        await member.stop()

    assert [(p.topic, p.partition) for p in lag] == [(tp.topic, tp.partition) for tp in tps]
    assert sum(p.end for p in lag) == 5 and sum(p.lag for p in lag) == 5
    assert all(p.committed == 0 for p in lag)
