"""Scenario 7: secrets and PII stay out of logs and metric labels.

Every scenario above saved its processes' logs and /metrics; this test reads them all (and,
run alone, makes its own at DEBUG level, with rejected requests among accepted ones): no
configured secret, no full email address and no phone number may appear anywhere.
"""

from __future__ import annotations

import httpx
import pytest

from tests.faults import dbstate, logscan, scenario
from tests.faults.harness import Harness
from tests.faults.poster import post_all
from tests.faults.workload import SECRETS, build


async def rejected(base: str) -> list[int]:
    """Requests a careless logger would print: wrong secrets, a token in the path."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        answers = [
            await client.post(
                f"{base}/webhooks/revenuecat",
                content=b"{}",
                headers={"Authorization": "Bearer wrong-" + SECRETS["REVENUECAT_AUTHORIZATION"]},
            ),
            await client.post(
                f"{base}/webhooks/klaviyo/flow/not-{SECRETS['KLAVIYO_FLOW_TOKEN']}",
                content=b'{"profile": {"email": "leak@faults.example"}}',
            ),
            await client.post(
                f"{base}/events",
                content=b'{"events": [{"email": "leak@faults.example", "phone": "+15005550006"}]}',
                headers={"Authorization": f"Bearer {SECRETS['EVENTS_API_KEY']}"},
            ),
        ]
    return [a.status_code for a in answers]


@pytest.mark.timeout(180)
async def test_no_secret_or_pii_in_logs(harness: Harness, seed: int) -> None:
    workload = build(seed, users=30, events=600)
    harness.extra_env["LOG_LEVEL"] = "DEBUG"
    await dbstate.seed(harness.database_url, workload.people, late=False)
    serve = harness.serve()
    harness.consume("consumer")
    base = f"http://127.0.0.1:{serve.port}"
    statuses = await rejected(base)
    posted = await post_all(lambda: base, workload.requests, rate=100.0)
    await dbstate.seed_late(harness.database_url, workload.people)
    settled = await scenario.settle(harness, workload)
    await scenario.scrape_metrics(harness)
    pii = [p.email for p in workload.people] + [p.phone for p in workload.people]
    files = [f for d in logscan.LOG_DIRS for f in logscan.files(d)]
    lines, leaks = logscan.scan(files, pii)
    scenario.report(
        "secrets and PII",
        {
            "scenarios scanned": len(logscan.LOG_DIRS),
            "files (logs and metrics)": len(files),
            "lines": lines,
            "rejected requests": statuses,
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "leaks": len(leaks),
        },
    )
    assert statuses == [401, 401, 400]
    assert settled.comparison.losses == 0 and settled.comparison.duplicates == 0
    assert lines > 200
    assert not leaks, "\n".join(map(str, leaks[:10]))
