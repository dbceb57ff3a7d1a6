"""Scenario 8: one topic lags the others by the whole workload.

One consumer group applies every topic but one while nobody consumes the last; when the
others are caught up, a second group starts on the lagging topic from its beginning (it is
SIGKILLed once it has committed its first events, and restarted). Run twice: the
experiments topic lagging (every purchase applies before any participation exists, and each
participation must find its purchases in the ledger), then the RevenueCat topic lagging
(every purchase applies after all participations). Purchases fall before, during and after
the exposures, some are refunded and some refunds reversed, and some participations see an
earlier impression of the other variant. Both runs must end in the oracle's state: 0 purchase
conversions lost, 0 doubled.
"""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import pytest

from tests.faults import dbstate, scenario
from tests.faults.harness import Harness
from tests.faults.poster import post_all
from tests.faults.workload import build

# lagging stream -> (the streams consumed at once, the sources they carry)
AHEAD = {
    "experiments": ("revenuecat,klaviyo,kit", {"revenuecat", "klaviyo", "kit"}),
    "revenuecat": ("experiments,klaviyo,kit", {"app", "klaviyo", "kit"}),
}
# What the lagging topic would have written, absent while it lags.
LAGGING_ROWS = {
    "experiments": "SELECT count(*) FROM user_experiment_participation",
    "revenuecat": "SELECT count(*) FROM ingest_revenuecat_ledger",
}


SOURCE = {"experiments": "app", "revenuecat": "revenuecat"}


async def first_applied(dsn: str, source: str, timeout: float = 60.0) -> int:
    """Wait until the lagging consumer has committed its first events; how many."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(int(timeout / 0.05)):
            count: int = await conn.fetchval(
                "SELECT count(*) FROM ingest_inbox WHERE source = $1", source
            )
            if count:
                return count
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"the {source} consumer applied nothing within {timeout:.0f} s")


@pytest.mark.parametrize("lagging", ["experiments", "revenuecat"])
@pytest.mark.timeout(300)
async def test_a_lagging_topic(harness: Harness, seed: int, lagging: str) -> None:
    workload = build(seed, users=100, events=2500)
    await dbstate.seed(harness.database_url, workload.people, late=False)
    serve = harness.serve()
    group = f"faults-{harness.prefix.rstrip('.')}"
    streams, sources = AHEAD[lagging]
    harness.consume("ahead", only=streams, CONSUMER_GROUP=f"{group}-ahead")
    late_at = len(workload.requests) // 2
    halfway = asyncio.Event()

    def progress(sent: int) -> None:
        if sent == late_at:
            halfway.set()

    posting = asyncio.create_task(
        post_all(
            lambda: f"http://127.0.0.1:{serve.port}",
            workload.requests,
            rate=80.0,
            progress=progress,
        )
    )
    await halfway.wait()
    await dbstate.seed_late(harness.database_url, workload.people)
    posted = await posting
    ahead_s = await scenario.wait_recorded(harness, workload, sources=sources)
    conn = await asyncpg.connect(harness.database_url)
    try:
        lagging_rows = await conn.fetchval(LAGGING_ROWS[lagging])
    finally:
        await conn.close()

    behind = harness.consume("behind", only=lagging, CONSUMER_GROUP=f"{group}-behind")
    applied_at_kill = await first_applied(harness.database_url, SOURCE[lagging])
    harness.kill(behind, signal.SIGKILL)
    behind.proc.wait(timeout=10)
    harness.consume("behind-2", only=lagging, CONSUMER_GROUP=f"{group}-behind")
    settled = await scenario.settle(harness, workload)
    comparison = settled.comparison
    expected = settled.expected
    purchases = [k for k in expected.conversions if k.startswith("purchase:")]
    refunds = [k for k in expected.conversions if k.startswith("refund:")]
    scenario.report(
        f"{lagging} topic lagging",
        {
            "seed": workload.seed,
            "events": len(workload.events),
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "other topics caught up after posting (s)": round(ahead_s, 1),
            f"rows of the {lagging} topic meanwhile": lagging_rows,
            "lagging events applied when its consumer was SIGKILLed": applied_at_kill,
            "lagging topic caught up after the restart (s)": round(settled.caught_up_s, 1),
            "pending retry runs": settled.retries,
            "purchase conversions (oracle)": len(purchases),
            "refund rows (oracle)": len(refunds),
            "ineligible impressions (oracle)": sum(not i[4] for i in expected.impressions.values()),
            "rows compared": comparison.rows,
            "duplicates": comparison.duplicates,
            "losses": comparison.losses,
        },
    )
    assert posted.accepted == len(workload.requests)
    assert lagging_rows == 0, "the lagging topic was applied early"
    assert purchases and refunds, "the workload made no purchase conversion or refund"
    assert comparison.duplicates == 0 and comparison.losses == 0, comparison.summary()
    await scenario.check_logs(harness, workload)
