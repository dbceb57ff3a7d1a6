"""The seeds' rules hold in the database: checks reject bad rows, boundaries pass, deletes
cascade as documented, and the client view picks each user's one revenue cat id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import pytest

from tests.conftest import SessionStack, scratch_database


@dataclass(frozen=True, slots=True)
class Ids:
    profile: UUID
    experiment: UUID
    variant: UUID

    def sql(self, template: str) -> str:
        return template.format(
            p=f"'{self.profile}'", e=f"'{self.experiment}'", v=f"'{self.variant}'"
        )


async def seed_experiment(conn: asyncpg.Pool) -> Ids:
    row = await conn.fetchrow(
        """
        WITH p AS (INSERT INTO user_profiles (email) VALUES ('Ann@Example.com') RETURNING id),
             e AS (INSERT INTO experiments (name) VALUES ('hero') RETURNING id),
             v AS (INSERT INTO variants (experiment_id, name) SELECT id, 'control' FROM e
                   RETURNING id)
        SELECT p.id AS profile, e.id AS experiment, v.id AS variant FROM p, e, v
        """
    )
    assert row is not None
    return Ids(row["profile"], row["experiment"], row["variant"])


IMPRESSION = (
    "INSERT INTO impressions (user_id, experiment_id, variant_id, {col})"
    " VALUES ({{p}}, {{e}}, {{v}}, {val})"
)
CONVERSION = (
    "INSERT INTO conversions (user_id, experiment_id, variant_id, conversion_type, {col})"
    " VALUES ({{p}}, {{e}}, {{v}}, 'purchase', {val})"
)
PARTICIPATION = (
    "INSERT INTO user_experiment_participation"
    " (user_id, experiment_id, variant_id, first_exposure_date, first_conversion_date)"
    " VALUES ({{p}}, {{e}}, {{v}}, '2024-05-02T00:00:00Z', {val})"
)
QUIZ = (
    "INSERT INTO quiz_results (user_id, quiz_type, result_type, questions_and_answers,"
    " quiz_version) VALUES ({{p}}, 'style', 'bold', '[]', {val})"
)


def impression(col: str, val: str) -> str:
    return IMPRESSION.format(col=col, val=val)


def conversion(col: str, val: str) -> str:
    return CONVERSION.format(col=col, val=val)


REJECTED = [
    pytest.param(
        "INSERT INTO experiments (name, confidence_level) VALUES ('x', 0.5)",
        asyncpg.CheckViolationError,
        id="confidence_level 0.5",
    ),
    pytest.param(
        "INSERT INTO experiments (name, confidence_level) VALUES ('x', 1.00)",
        asyncpg.CheckViolationError,
        id="confidence_level 1.00",
    ),
    pytest.param(QUIZ.format(val="'abc'"), asyncpg.CheckViolationError, id="quiz_version abc"),
    pytest.param(QUIZ.format(val="'1'"), asyncpg.CheckViolationError, id="quiz_version 1"),
    pytest.param(
        impression("scroll_depth_percent", "101"),
        asyncpg.CheckViolationError,
        id="scroll_depth_percent 101",
    ),
    pytest.param(
        impression("scroll_depth_percent", "-1"),
        asyncpg.CheckViolationError,
        id="scroll_depth_percent -1",
    ),
    pytest.param(
        impression("device_type", "'phone'"),
        asyncpg.InvalidTextRepresentationError,
        id="device_type outside the enum",
    ),
    pytest.param(
        conversion("conversion_value", "-1"),
        asyncpg.CheckViolationError,
        id="conversion_value -1",
    ),
    pytest.param(
        PARTICIPATION.format(val="'2024-05-01T23:59:59Z'"),
        asyncpg.CheckViolationError,
        id="first_conversion_date before first_exposure_date",
    ),
    pytest.param(
        "INSERT INTO gem_transactions (user_id, transaction_type, amount)"
        " VALUES ({p}, 'REFUND', 5)",
        asyncpg.CheckViolationError,
        id="transaction_type REFUND",
    ),
    pytest.param(
        "INSERT INTO gem_transactions (user_id, transaction_type, amount)"
        " VALUES ({p}, 'CREDIT', 0)",
        asyncpg.CheckViolationError,
        id="gem amount 0",
    ),
    pytest.param(
        "INSERT INTO variants (experiment_id, name) VALUES ({e}, 'control')",
        asyncpg.UniqueViolationError,
        id="variant name twice in one experiment",
    ),
    pytest.param(
        "INSERT INTO users (uid, email) VALUES ('u1', 'a@example.com');"
        " INSERT INTO user_notification_settings (user_id, channel, enabled)"
        " SELECT id, 'fax', true FROM users",
        asyncpg.CheckViolationError,
        id="notification channel fax",
    ),
]


@pytest.fixture(scope="module")
async def seeded(stack: SessionStack) -> AsyncIterator[tuple[asyncpg.Pool, Ids]]:
    """One migrated database for all the rejection cases: each statement fails and rolls back
    on its own, so cloning a database per case would only cost time."""
    async with (
        scratch_database(stack, template=stack.template) as dsn,
        asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool,
    ):
        yield pool, await seed_experiment(pool)


@pytest.mark.parametrize(("template", "error"), REJECTED)
async def test_documented_rules_reject(
    seeded: tuple[asyncpg.Pool, Ids], template: str, error: type[Exception]
) -> None:
    pool, ids = seeded

    with pytest.raises(error):
        await pool.execute(ids.sql(template))


async def test_boundaries_are_accepted(pool: asyncpg.Pool) -> None:
    ids = await seed_experiment(pool)
    statements = [
        "INSERT INTO experiments (name, confidence_level) VALUES ('low', 0.80), ('high', 0.99)",
        QUIZ.format(val="'1.0'"),
        QUIZ.format(val="'2.10.3'"),
        impression("scroll_depth_percent", "0"),
        impression("scroll_depth_percent", "100"),
        impression("device_type", "'wearable'"),
        impression("connection_type", "'slow-2g'"),
        conversion("conversion_value", "0"),
        PARTICIPATION.format(val="'2024-05-02T00:00:00Z'"),
    ]

    for statement in statements:
        await pool.execute(ids.sql(statement))

    assert await pool.fetchval("SELECT count(*) FROM impressions") == 4
    assert await pool.fetchval("SELECT count(*) FROM quiz_results") == 2


async def test_uuid_and_utc_defaults_fill_in(pool: asyncpg.Pool) -> None:
    row = await pool.fetchrow(
        "INSERT INTO user_profiles (email) VALUES ('b@example.com')"
        " RETURNING id, action_token, kit_state, insight_gems"
    )

    assert row is not None
    assert isinstance(row["id"], UUID) and isinstance(row["action_token"], UUID)
    assert row["id"] != row["action_token"]
    assert (row["kit_state"], row["insight_gems"]) == ("unconfirmed", 100)


async def test_deleting_a_user_cascades_to_its_rows(pool: asyncpg.Pool) -> None:
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ('usr_1', 'a@example.com') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids"
        " (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)"
        " VALUES ('iurc_1', $1, 'u_rc_1', '{}', 1, 1), ('iurc_2', $1, 'u_rc_2', '{}', 2, 2)",
        user_id,
    )
    await pool.execute(
        "INSERT INTO user_klaviyo_profiles (uid, klaviyo_id, user_id, email, timezone,"
        " environment, created_at, updated_at)"
        " VALUES ('ukp_1', 'K1', $1, 'a@example.com', 'UTC', 'dev', 1, 1)",
        user_id,
    )

    await pool.execute("DELETE FROM users WHERE id = $1", user_id)

    assert await pool.fetchval("SELECT count(*) FROM user_revenue_cat_ids") == 0
    assert await pool.fetchval("SELECT count(*) FROM user_klaviyo_profiles") == 0


async def test_deleting_a_profile_cascades_and_keeps_token_references(pool: asyncpg.Pool) -> None:
    """Seed 002 has no foreign keys on a token's experiment, variant and impression: a token
    may name an impression still on its way, and it keeps the id when the impression goes."""
    ids = await seed_experiment(pool)
    other = await pool.fetchval(
        "INSERT INTO user_profiles (email) VALUES ('c@example.com') RETURNING id"
    )
    impression_id = await pool.fetchval(
        ids.sql(
            "INSERT INTO impressions (user_id, experiment_id, variant_id)"
            " VALUES ({p}, {e}, {v}) RETURNING id"
        )
    )
    in_flight = UUID(int=42)
    await pool.executemany(
        "INSERT INTO email_verification_tokens"
        " (user_profile_id, token, email, expires_at, impression_id, experiment_id, variant_id)"
        " VALUES ($1, $2, 'c@example.com', now(), $3, $4, $4)",
        [(other, "tok", impression_id, None), (other, "tok2", in_flight, in_flight)],
    )

    await pool.execute("DELETE FROM user_profiles WHERE id = $1", ids.profile)

    assert await pool.fetchval("SELECT count(*) FROM impressions") == 0
    kept = await pool.fetch("SELECT impression_id FROM email_verification_tokens ORDER BY token")
    assert [r["impression_id"] for r in kept] == [impression_id, in_flight]


async def test_client_view_picks_newest_then_lowest_uid(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO users (id, uid, email) VALUES"
        " (1, 'usr_1', 'a@example.com'), (2, 'usr_2', 'b@example.com'),"
        " (3, 'usr_3', 'c@example.com')"
    )
    await pool.executemany(
        "INSERT INTO user_revenue_cat_ids"
        " (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)"
        " VALUES ($1, $2, $3, '{}', $4, 0)",
        [
            ("iurc_b", 1, "u_rc_old", 100.0),
            ("iurc_c", 1, "u_rc_new_c", 200.5),
            ("iurc_a", 1, "u_rc_new_a", 200.5),
            ("iurc_z", 2, "u_rc_only", 50.0),
        ],
    )

    rows = await pool.fetch(
        "SELECT user_id, revenue_cat_id, uid, created_at FROM user_client_revenue_cat_ids"
        " ORDER BY user_id"
    )

    assert [tuple(r) for r in rows] == [
        (1, "u_rc_new_a", "iurc_a", 200.5),
        (2, "u_rc_only", "iurc_z", 50.0),
    ]
