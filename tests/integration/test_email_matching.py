"""Email matching: one normalisation (``ingest_email_key``, sql/0007) for the Kit and Klaviyo
matches and for the wake-up keys of parked events, whatever the database's ctype.

Every test runs on the session's database and on one created with a C ctype, where SQL
``lower()`` folds ASCII only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from consumers.apply import Disposition
from consumers.registry import build_handlers
from core import migrate
from tests.conftest import SessionStack, scratch_database
from tests.integration.test_consumers_handlers import apply, flow_event, kit_event, token
from tests.support import retry_for

# (as the application stored it, as the provider sends it): an accented capital, a final
# sigma (Python lower-cases it to U+03C2, PostgreSQL to U+03C3), plain ASCII.
SPELLINGS = [
    ("ÉLODIE.{t}@x.com", "élodie.{t}@x.com"),
    ("ΣΟΦΙΑ.ΟΔΟΣ.{t}@x.gr", "σοφια.οδος.{t}@x.gr"),
    ("Ada.{t}@Example.COM", "ada.{t}@example.com"),
]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture(scope="module")
async def c_ctype_template(stack: SessionStack) -> AsyncIterator[str]:
    """A database created with LC_CTYPE 'C' and migrated, cloned by each test."""
    name = f"ingester_c_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute(
            f"CREATE DATABASE {_quote(name)} TEMPLATE template0 ENCODING 'UTF8'"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        await migrate.migrate(stack.dsn_for(name), migrate.default_dir())
        yield name
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        await admin.close()


@pytest.fixture(params=["default ctype", "C ctype"])
async def any_ctype(
    request: pytest.FixtureRequest, stack: SessionStack, c_ctype_template: str
) -> AsyncIterator[str]:
    """A clone of the session's migrated database, or of the C-ctype one."""
    template = stack.template if request.param == "default ctype" else c_ctype_template
    async with scratch_database(stack, template=template) as dsn:
        yield dsn


@pytest.fixture
async def db(any_ctype: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(any_ctype, min_size=1, max_size=3) as created:
        yield created


async def woken_pass(pool: asyncpg.Pool) -> dict[str, int]:
    """One retry pass: applies only rows a wake-up made due (their backoff is far off)."""
    return (await retry_for(pool, build_handlers(())).run_pass()).totals()


def spellings() -> list[tuple[str, str]]:
    """Fresh addresses for each pair of SPELLINGS."""
    t = token().lower()
    return [(stored.format(t=t), sent.format(t=t)) for stored, sent in SPELLINGS]


async def test_kit_matches_the_profile_whatever_the_case(db: asyncpg.Pool) -> None:
    for stored, sent in spellings():
        profile = await db.fetchval(
            "INSERT INTO user_profiles (email) VALUES ($1) RETURNING id", stored
        )
        records = kit_event(sent, "subscriber.bounced", "2024-05-01T00:00:00Z")
        assert await apply(db, records) == [Disposition.APPLIED], sent
        state = await db.fetchval("SELECT kit_state FROM user_profiles WHERE id = $1", profile)
        assert state == "bounced", sent


async def test_parked_kit_events_are_woken_by_their_profiles(db: asyncpg.Pool) -> None:
    pairs = spellings()
    for _, sent in pairs:
        records = kit_event(sent, "subscriber.complained", "2024-05-01T00:00:00Z")
        assert await apply(db, records) == [Disposition.PENDING]
    for stored, _ in pairs:
        await db.execute("INSERT INTO user_profiles (email) VALUES ($1)", stored)
    assert (await woken_pass(db))["applied"] == len(pairs)
    states = await db.fetch(
        "SELECT kit_state FROM user_profiles WHERE email = ANY($1::text[])",
        [stored for stored, _ in pairs],
    )
    assert [r["kit_state"] for r in states] == ["complained"] * len(pairs)


async def new_user(pool: asyncpg.Pool, email: str) -> int:
    user_id: int = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ($1, $2) RETURNING id", f"u_{token()}", email
    )
    return user_id


async def owner_of(pool: asyncpg.Pool, klaviyo_id: str) -> int | None:
    owner: int | None = await pool.fetchval(
        "SELECT user_id FROM user_klaviyo_profiles WHERE klaviyo_id = $1", klaviyo_id
    )
    return owner


async def test_klaviyo_profiles_find_their_users_whatever_the_case(db: asyncpg.Pool) -> None:
    for stored, sent in spellings():
        user_id = await new_user(db, stored)
        klaviyo_id = f"K{token()}"
        records = flow_event(klaviyo_id, sent, "2024-05-01T00:00:00Z")
        assert await apply(db, records) == [Disposition.APPLIED], sent
        assert await owner_of(db, klaviyo_id) == user_id, sent


async def test_parked_klaviyo_profiles_are_woken_by_their_users(db: asyncpg.Pool) -> None:
    waiting: list[tuple[str, str]] = []
    for stored, sent in spellings():
        klaviyo_id = f"K{token()}"
        records = flow_event(klaviyo_id, sent, "2024-05-01T00:00:00Z")
        assert await apply(db, records) == [Disposition.PENDING]
        waiting.append((klaviyo_id, stored))
    users = {klaviyo_id: await new_user(db, stored) for klaviyo_id, stored in waiting}
    assert (await woken_pass(db))["applied"] == len(waiting)
    assert {k: await owner_of(db, k) for k in users} == users


async def test_the_key_is_a_case_folding_independent_of_the_ctype(db: asyncpg.Pool) -> None:
    keys = await db.fetch(
        "SELECT ingest_email_key(e) AS key FROM unnest($1::text[]) AS e",
        ["ÉLODIE@X.COM", "élodie@x.com", "Élodie@x.Com"],
    )
    assert {r["key"] for r in keys} == {"élodie@x.com"}
