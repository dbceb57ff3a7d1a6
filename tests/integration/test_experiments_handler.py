"""ExperimentsHandler against the real PostgreSQL schema: impressions, participations,
conversions and attribution rows, one handler call per transaction as the runtime makes it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from consumers.errors import PoisonError
from consumers.types import APPLIED, pending, skipped
from tests.integration.experiments_helpers import (
    Seeded,
    apply,
    at,
    create_experiment,
    create_profile,
    events,
    item,
    participation,
)


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> Seeded:
    return await create_experiment(pool)


@pytest.fixture
async def user(pool: asyncpg.Pool) -> uuid.UUID:
    return await create_profile(pool, "Ann@Example.com")


async def test_first_impression_creates_participation_and_second_increments(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    first = item("impression", user, at(0), id=uuid.uuid4())
    assert await apply(pool, events(first)) == [APPLIED]
    part = await participation(pool, user)
    assert part is not None
    assert (part["variant_id"], part["first_exposure_date"], part["total_impressions"]) == (
        seeded.variants["control"],
        at(0),
        1,
    )

    assert await apply(pool, events(item("impression", user, at(1)))) == [APPLIED]
    part = await participation(pool, user)
    assert part is not None
    assert (part["first_exposure_date"], part["total_impressions"]) == (at(0), 2)
    flags = await pool.fetch(
        "SELECT id, is_first_exposure, user_was_eligible FROM impressions ORDER BY impression_at"
    )
    assert [(r["is_first_exposure"], r["user_was_eligible"]) for r in flags] == [
        (True, True),
        (False, True),
    ]
    assert flags[0]["id"] == uuid.UUID(first["id"])


async def test_impressions_of_one_user_in_one_batch_apply_in_order(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    batch = events(*(item("impression", user, at(h)) for h in range(3)))
    assert await apply(pool, batch) == [APPLIED] * 3
    part = await participation(pool, user)
    assert part is not None
    assert (part["first_exposure_date"], part["total_impressions"]) == (at(0), 3)
    firsts = await pool.fetchval("SELECT count(*) FROM impressions WHERE is_first_exposure")
    assert firsts == 1


async def test_duplicate_impression_id_changes_nothing(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    same = item("impression", user, at(0))
    assert await apply(pool, events(same)) == [APPLIED]
    assert await apply(pool, events(same)) == [APPLIED]
    assert await apply(pool, events(same, same)) == [APPLIED, APPLIED]
    part = await participation(pool, user)
    assert part is not None
    assert part["total_impressions"] == 1
    assert await pool.fetchval("SELECT count(*) FROM impressions") == 1


async def test_impression_of_another_variant_does_not_move_participation(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    await apply(pool, events(item("impression", user, at(0), variant="control")))
    stray = item("impression", user, at(1), variant="treatment")
    assert await apply(pool, events(stray)) == [APPLIED]
    part = await participation(pool, user)
    assert part is not None
    assert (part["variant_id"], part["total_impressions"]) == (seeded.variants["control"], 1)
    row = await pool.fetchrow(
        "SELECT variant_id, user_was_eligible, is_first_exposure,"
        " user_eligibility_status->>'reason' AS reason FROM impressions WHERE id = $1",
        uuid.UUID(stray["id"]),
    )
    assert row is not None
    assert dict(row) == {
        "variant_id": seeded.variants["treatment"],
        "user_was_eligible": False,
        "is_first_exposure": False,
        "reason": "assigned_to_other_variant",
    }


async def test_impression_stores_every_optional_column(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    optional: dict[str, Any] = {
        "session_identifier": "sess-1",
        "page_url": "https://example.com/checkout",
        "user_agent": "Mozilla/5.0",
        "country_code": "DE",
        "region": "Berlin",
        "city": "Berlin",
        "device_type": "mobile",
        "screen_resolution": "1170x2532",
        "viewport_size": "390x844",
        "connection_type": "4g",
        "language_code": "de-DE",
        "time_zone": "Europe/Berlin",
        "utm_source": "newsletter",
        "utm_medium": "email",
        "utm_campaign": "june",
        "time_on_page": 42,
        "scroll_depth_percent": 75,
        "page_load_time": 812,
        "bounce": True,
        "metadata": {"button": "green"},
        "user_context": {"plan": "free"},
    }
    sent = item("impression", user, at(0), **optional)
    await apply(pool, events(sent))
    # jsonb and enums read back as text: no codec is registered on the test pool.
    row = await pool.fetchrow(
        f"SELECT {', '.join(optional)}, impression_at, is_first_exposure FROM impressions"
    )
    assert row is not None
    stored = {name: row[name] for name in optional}
    stored["metadata"] = orjson.loads(stored["metadata"])
    stored["user_context"] = orjson.loads(stored["user_context"])
    assert stored == optional
    assert (row["impression_at"], row["is_first_exposure"]) == (at(0), True)


async def test_one_statement_writes_rows_with_different_optional_columns(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    """The batch's impressions are written by one INSERT from parallel arrays: each row keeps
    its own values, and a column a row leaves out gets the column's default for that row."""
    other = await create_profile(pool, "Bo@Example.com")
    sent = [
        item("impression", user, at(0), city="Berlin", bounce=True, metadata={"a": 1}),
        item("impression", other, at(1), device_type="tv", time_on_page=3),
        item("impression", user, at(2), connection_type="5g", user_context={"b": [2]}),
    ]
    assert await apply(pool, events(*sent)) == [APPLIED] * 3
    rows = await pool.fetch(
        "SELECT id::text, city, bounce, metadata::text, device_type::text, time_on_page,"
        " connection_type::text, user_context::text, user_eligibility_status::text"
        " FROM impressions ORDER BY impression_at"
    )
    assert [tuple(r) for r in rows] == [
        (sent[0]["id"], "Berlin", True, '{"a": 1}', None, None, None, "{}", "{}"),
        (sent[1]["id"], None, False, "{}", "tv", 3, None, "{}", "{}"),
        (sent[2]["id"], None, False, "{}", None, None, "5g", '{"b": [2]}', "{}"),
    ]
    totals = await pool.fetch(
        "SELECT user_id, total_impressions FROM user_experiment_participation ORDER BY 2"
    )
    assert [(r["user_id"], r["total_impressions"]) for r in totals] == [(other, 1), (user, 2)]


@pytest.mark.parametrize(
    ("window", "hours", "within"),
    [
        pytest.param(None, 24 * 30, True, id="default window, last second inside"),
        pytest.param(None, 24 * 30 + 1, False, id="default window, an hour outside"),
        pytest.param(7, 24 * 3, True, id="7-day window inside"),
        pytest.param(7, 24 * 8, False, id="7-day window outside"),
    ],
)
async def test_conversion_inside_and_outside_the_window(
    pool: asyncpg.Pool,
    seeded: Seeded,
    user: uuid.UUID,
    window: int | None,
    hours: int,
    within: bool,
) -> None:
    await apply(pool, events(item("impression", user, at(0))))
    extra: dict[str, Any] = {} if window is None else {"conversion_window_days": window}
    conversion = item(
        "conversion", user, at(hours), conversion_type="signup", conversion_value=12.5, **extra
    )
    assert await apply(pool, events(conversion)) == [APPLIED]
    row = await pool.fetchrow("SELECT * FROM conversions")
    assert row is not None
    assert row["id"] == uuid.UUID(conversion["id"])
    assert row["variant_id"] == seeded.variants["control"]
    assert row["conversion_type"] == "signup"
    assert row["conversion_value"] == Decimal("12.50")
    assert row["conversion_window_days"] == (window or 30)
    assert row["time_to_convert"] == hours * 3600
    assert row["original_exposure_date"] == at(0)
    assert row["created_at"] == at(hours)
    assert row["is_first_conversion_for_experiment"] is True
    part = await participation(pool, user)
    assert part is not None
    assert (part["has_converted"], part["first_conversion_date"]) == (True, at(hours))
    assert part["conversion_within_window"] is within


async def test_second_conversion_is_not_first_and_keeps_first_conversion_date(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    await apply(pool, events(item("impression", user, at(0))))
    first = item("conversion", user, at(2))
    second = item("conversion", user, at(5))
    assert await apply(pool, events(first, second)) == [APPLIED, APPLIED]
    flags = {
        r["id"]: r["is_first_conversion_for_experiment"]
        for r in await pool.fetch("SELECT id, is_first_conversion_for_experiment FROM conversions")
    }
    assert flags == {uuid.UUID(first["id"]): True, uuid.UUID(second["id"]): False}
    part = await participation(pool, user)
    assert part is not None
    assert part["first_conversion_date"] == at(2)


async def test_attribution_row_values(pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID) -> None:
    await apply(pool, events(item("impression", user, at(0))))
    # 26 h 59 min after exposure: 26 whole hours.
    conversion = item("conversion", user, at(26 + 59 / 60), conversion_value=19.99)
    await apply(pool, events(conversion))
    row = await pool.fetchrow("SELECT * FROM conversion_attribution")
    assert row is not None
    assert {k: row[k] for k in ("user_id", "conversion_id", "experiment_id", "variant_id")} == {
        "user_id": user,
        "conversion_id": uuid.UUID(conversion["id"]),
        "experiment_id": seeded.experiment,
        "variant_id": seeded.variants["control"],
    }
    assert row["attribution_method"] == "first_exposure"
    assert row["attribution_confidence"] == Decimal("1.00")
    assert row["time_to_conversion_hours"] == 26
    assert row["conversion_value_attributed"] == Decimal("19.99")


async def test_conversion_without_participation_is_pending_not_invented(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    early = item("conversion", user, at(0))
    assert await apply(pool, events(early)) == [pending("no participation")]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 0
    assert await participation(pool, user) is None


async def test_conversion_before_first_exposure_is_pending(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    await apply(pool, events(item("impression", user, at(5))))
    result = await apply(pool, events(item("conversion", user, at(1))))
    assert result == [pending("conversion before first exposure")]


async def test_late_earlier_impression_becomes_the_first_exposure(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    later = item("impression", user, at(5))
    earlier = item("impression", user, at(1))
    await apply(pool, events(later))
    await apply(pool, events(earlier))
    part = await participation(pool, user)
    assert part is not None
    assert (part["first_exposure_date"], part["total_impressions"]) == (at(1), 2)
    firsts = await pool.fetch("SELECT id FROM impressions WHERE is_first_exposure")
    assert [r["id"] for r in firsts] == [uuid.UUID(earlier["id"])]


async def test_unknown_names_and_users_are_pending(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    batch = events(
        item("impression", user, at(0), experiment="nope"),
        item("impression", user, at(0), variant="nope"),
        item("impression", uuid.uuid4(), at(0)),
    )
    assert await apply(pool, batch) == [
        pending("unknown experiment"),
        pending("unknown variant"),
        pending("unknown user"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM impressions") == 0


async def test_inactive_ended_and_unstarted_experiments_are_skipped(
    pool: asyncpg.Pool, user: uuid.UUID
) -> None:
    await create_experiment(pool, "off", is_active=False)
    await create_experiment(pool, "done", status="completed")
    await create_experiment(pool, "closed", ended_at=at(1))
    await create_experiment(pool, "later", started_at=at(10))
    batch = events(
        item("impression", user, at(0), experiment="off"),
        item("impression", user, at(0), experiment="done"),
        item("impression", user, at(2), experiment="closed"),
        item("impression", user, at(0), experiment="closed"),
        item("impression", user, at(0), experiment="later"),
    )
    assert await apply(pool, batch) == [
        skipped("experiment inactive"),
        skipped("experiment ended"),
        skipped("experiment ended"),
        APPLIED,
        skipped("experiment not started"),
    ]


async def test_undecodable_item_is_poison_naming_the_event(
    pool: asyncpg.Pool, seeded: Seeded, user: uuid.UUID
) -> None:
    good = events(item("impression", user, at(0)))[0]
    bad = replace(good, id=str(uuid.uuid4()), data={"id": 1})
    with pytest.raises(PoisonError) as raised:
        await apply(pool, [good, bad])
    assert raised.value.event_id == bad.id
    assert await pool.fetchval("SELECT count(*) FROM impressions") == 0
