"""rc-sync's calls against the stand-in of RevenueCat, driven by the sweep: a 429 storm and
5xx answers are waited out, a permanent 4xx is counted and skipped (and never sent again),
and the sweep finds an email changed directly in ``users``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from consumers.backoff import Backoff
from rcsync import metrics
from rcsync.answers import REFUSED, TIMEOUT
from rcsync.api import ApiPolicy, RevenueCatApi
from rcsync.ratelimit import RETRY_AFTER
from rcsync.standin import Fault, StandInServer
from rcsync.sweep import sweep_once
from rcsync.sync import Syncer
from tests.integration.rcsync_helpers import API_KEY, Person, add_people, known, standin_server

QUICK = Backoff(initial_s=0.05, factor=2.0, cap_s=0.2, jitter=0.5)


@asynccontextmanager
async def syncer_for(
    pool: asyncpg.Pool,
    server: StandInServer,
    *,
    rps: float = 50.0,
    concurrency: int = 4,
    timeout_s: float = 5.0,
) -> AsyncIterator[Syncer]:
    policy = ApiPolicy(server.url, API_KEY, timeout_s=timeout_s, max_rps=rps, backoff_max_s=0.2)
    async with RevenueCatApi.client_for(policy) as client:
        api = RevenueCatApi(policy, client, backoff=QUICK)
        yield Syncer(pool, api, environment="dev", concurrency=concurrency)


def count(counter: object) -> float:
    value: float = counter._value.get()  # type: ignore[attr-defined]
    return value


async def test_a_429_storm_and_5xx_are_waited_out(pool: asyncpg.Pool) -> None:
    people = [Person(f"u_rc_{n}", f"user{n}@example.com") for n in range(6)]
    await add_people(pool, people)
    waits = count(metrics.RATE_LIMIT_WAITS.labels(RETRY_AFTER))

    async with standin_server() as server, syncer_for(pool, server, concurrency=1) as syncer:
        standin = server.standin
        standin.faults.extend([Fault(429, 0.3)] * 5 + [Fault(503), Fault(500)] + [Fault(429, 0.3)])
        assert await sweep_once(pool, syncer, rows=100) == len(people)

    for person in people:
        assert standin.customers[person.revenue_cat_id]["$email"]["value"] == person.email
        assert len(standin.sent(person.revenue_cat_id, "$email")) == 1, "one change each"
        assert (await known(pool, person.revenue_cat_id))["$email"]["value"] == person.email
    # Nothing was asked of RevenueCat before a 429's Retry-After had passed.
    received = standin.received
    for answered, after in itertools.pairwise(received):
        if answered.status == 429:
            assert after.at - answered.at >= 0.3 - 0.01, (answered, after)
    assert [r.status for r in received].count(429) == 6
    assert count(metrics.RATE_LIMIT_WAITS.labels(RETRY_AFTER)) > waits


async def test_a_permanent_4xx_is_counted_and_skipped(pool: asyncpg.Pool) -> None:
    typo = Person("u_rc_typo", "not-an-email", first_name="Ty")
    fine = Person("u_rc_fine", "fine@example.com")
    await add_people(pool, [typo, fine])
    refused = count(metrics.CALLS.labels(REFUSED))

    async with standin_server() as server, syncer_for(pool, server) as syncer:
        standin = server.standin
        assert await sweep_once(pool, syncer, rows=100) == 2
        # The next sweep sends nothing: the refused value is remembered, the rest is set.
        assert await sweep_once(pool, syncer, rows=100) == 0

    (call,) = [r for r in standin.received if r.app_user_id == typo.revenue_cat_id]
    assert call.status == 400
    assert count(metrics.CALLS.labels(REFUSED)) == refused + 1
    stored = await known(pool, typo.revenue_cat_id)
    assert "$email" not in stored
    assert stored["$displayName"]["value"] == "Ty"  # the attributes RevenueCat took
    row = await pool.fetchrow(
        "SELECT intent, refused::text FROM ingest_rc_sync WHERE revenue_cat_id = $1",
        typo.revenue_cat_id,
    )
    assert row is not None
    assert row["intent"] is None
    assert row["refused"] == '{"$email": "not-an-email"}'
    assert (await known(pool, fine.revenue_cat_id))["$email"]["value"] == fine.email

    # Our value changes: that is a new change, sent once.
    await pool.execute("UPDATE users SET email = 'ty@example.com' WHERE uid = 'user_u_rc_typo'")
    async with standin_server() as server, syncer_for(pool, server) as syncer:
        assert await sweep_once(pool, syncer, rows=100) == 1
    assert server.standin.customers[typo.revenue_cat_id]["$email"]["value"] == "ty@example.com"
    assert await pool.fetchval("SELECT refused::text FROM ingest_rc_sync") == "{}"


async def test_the_sweep_picks_up_an_email_changed_in_users(pool: asyncpg.Pool) -> None:
    people = [Person(f"u_rc_{n}", f"user{n}@example.com").in_sync() for n in range(7)]
    await add_people(pool, people)

    async with standin_server() as server, syncer_for(pool, server) as syncer:
        assert await sweep_once(pool, syncer, rows=3) == 0  # in sync: nothing sent
        await pool.execute(
            "UPDATE users SET email = 'renamed@example.com' WHERE uid = 'user_u_rc_5'"
        )
        assert await sweep_once(pool, syncer, rows=3) == 1
        assert await sweep_once(pool, syncer, rows=3) == 0

    (call,) = server.standin.received
    assert call.app_user_id == "u_rc_5"
    assert call.attributes["$email"]["value"] == "renamed@example.com"
    assert (await known(pool, "u_rc_5"))["$email"] == call.attributes["$email"]


async def test_a_call_that_times_out_is_sent_again_unchanged(pool: asyncpg.Pool) -> None:
    ada = Person("u_rc_ada", "ada@example.com")
    await add_people(pool, [ada])
    timeouts = count(metrics.CALLS.labels(TIMEOUT))

    async with standin_server() as server, syncer_for(pool, server, timeout_s=0.3) as syncer:
        standin = server.standin
        standin.hold()  # saved, answered never: the call times out and is retried
        sweep = asyncio.create_task(sweep_once(pool, syncer, rows=10))
        await standin.wait_until(lambda: len(standin.received) >= 2)
        standin.release()
        assert await sweep == 1

    assert count(metrics.CALLS.labels(TIMEOUT)) >= timeouts + 1
    assert len(standin.sent(ada.revenue_cat_id, "$email")) == 1  # the same body each time
    assert [a[1] for a in standin.applied] == ["$email", "environment"]  # saved once
    assert (await known(pool, ada.revenue_cat_id))["$email"]["value"] == ada.email
