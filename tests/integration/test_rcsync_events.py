"""rc-sync on the RevenueCat topic, against the stand-in of RevenueCat's API: a differing
value is sent once, also when the event is redelivered; an equal value is never sent; a
burst of customers keeps to RC_SYNC_MAX_RPS."""

from __future__ import annotations

import asyncpg

from core.settings import Settings
from rcsync import metrics
from rcsync.ratelimit import CLIENT
from tests.integration.rcsync_helpers import (
    OLD_MS,
    Person,
    add_people,
    entry,
    known,
    rc_event,
    rc_settings,
    rc_sync_running,
    standin_server,
)
from tests.support import publish


async def test_a_differing_email_is_sent_once_also_when_redelivered(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    ada = Person("u_rc_ada", "ada@example.com", first_name="Ada").in_sync()
    stale = {**ada.known, "$email": entry("old@example.com")}
    await add_people(pool, [Person(ada.revenue_cat_id, ada.email, stale, "Ada")])
    event = rc_event(ada.revenue_cat_id, {"$email": entry("old@example.com")}, key="k")
    bootstrap = settings.kafka_bootstrap_servers or ""

    async with standin_server() as server:
        standin = server.standin
        rc = rc_settings(settings, server.url)
        await publish(bootstrap, settings.topic_prefix, [event, event])  # one redelivery
        async with rc_sync_running(rc):
            await standin.wait_until(lambda: len(standin.received) >= 1)
            # A probe behind them on the same partition: once it is answered, both copies
            # of the event have been read.
            probe = Person("u_rc_probe", "probe@example.com")
            await add_people(pool, [probe])
            await publish(bootstrap, settings.topic_prefix, [rc_event("u_rc_probe", key="k")])
            await standin.wait_until(lambda: len(standin.received) >= 2)
        # Another group (a reset offset, a new deployment) reads it all again and finds
        # nothing left to send but the new customer behind it.
        async with rc_sync_running(rc.with_overrides(rc_sync_group=rc.rc_sync_group + "-2")):
            await publish(bootstrap, settings.topic_prefix, [rc_event("u_rc_probe", key="k")])
            await add_people(pool, [Person("u_rc_probe2", "probe2@example.com")])
            await publish(bootstrap, settings.topic_prefix, [rc_event("u_rc_probe2", key="k")])
            await standin.wait_until(lambda: len(standin.received) >= 3)

    calls = [r for r in standin.received if r.app_user_id == ada.revenue_cat_id]
    assert len(calls) == 1
    assert set(calls[0].attributes) == {"$email"}
    assert standin.sent(ada.revenue_cat_id, "$email") == {
        ("ada@example.com", calls[0].attributes["$email"]["updated_at_ms"])
    }
    # What was set is recorded, merged by updated_at_ms, so an echo changes nothing.
    assert (await known(pool, ada.revenue_cat_id))["$email"] == calls[0].attributes["$email"]
    assert [r.app_user_id for r in standin.received] == ["u_rc_ada", "u_rc_probe", "u_rc_probe2"]
    assert await pool.fetchval("SELECT count(*) FROM ingest_rc_sync WHERE intent IS NOT NULL") == 0


async def test_an_equal_value_is_not_sent(settings: Settings, pool: asyncpg.Pool) -> None:
    ada = Person("u_rc_ada", "ada@example.com", first_name="Ada").in_sync()
    await add_people(pool, [ada])
    bootstrap = settings.kafka_bootstrap_servers or ""
    newer = OLD_MS + 1000
    records = [
        # RevenueCat reports exactly what we hold: nothing to do.
        rc_event(ada.revenue_cat_id, {"$email": entry("ada@example.com", newer)}, key="k"),
        # It reports no attributes at all: what we stored stands, equal to ours.
        rc_event(ada.revenue_cat_id, {}, key="k"),
        # The app renamed the customer: our name goes back, and only the name.
        rc_event(ada.revenue_cat_id, {"$displayName": entry("Ada L.", newer)}, key="k"),
    ]

    async with standin_server() as server:
        await publish(bootstrap, settings.topic_prefix, records)
        async with rc_sync_running(rc_settings(settings, server.url)):
            await server.standin.wait_until(lambda: len(server.standin.received) >= 1)

    (call,) = server.standin.received
    assert list(call.attributes) == ["$displayName"]
    assert call.attributes["$displayName"]["value"] == "Ada"
    assert call.attributes["$displayName"]["updated_at_ms"] > newer


async def test_a_burst_of_customers_keeps_to_the_rate_limit(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    rps, concurrency, customers = 200.0, 4, 1000
    client_waits = metrics.RATE_LIMIT_WAITS.labels(CLIENT)._value.get()
    people = [Person(f"u_rc_{n}", f"user{n}@example.com") for n in range(customers)]
    await add_people(pool, people)
    bootstrap = settings.kafka_bootstrap_servers or ""
    await publish(bootstrap, settings.topic_prefix, [rc_event(p.revenue_cat_id) for p in people])

    async with standin_server() as server:
        rc = rc_settings(settings, server.url, rc_sync_max_rps=rps, rc_sync_concurrency=concurrency)
        async with rc_sync_running(rc):
            await server.standin.wait_until(
                lambda: len(server.standin.received) >= customers, timeout_s=60
            )

    received = server.standin.received
    assert sorted(r.app_user_id for r in received) == sorted(p.revenue_cat_id for p in people)
    arrivals = sorted(r.at for r in received)
    busiest = max(
        sum(1 for t in arrivals[i:] if t < start + 1.0) for i, start in enumerate(arrivals)
    )
    # The bucket starts a call at most every 1/rps s (one token); calls already in flight
    # when the event loop stalls can arrive together, at most `concurrency` of them.
    assert busiest <= rps + concurrency
    assert metrics.RATE_LIMIT_WAITS.labels(CLIENT)._value.get() > client_waits, "never limited"
