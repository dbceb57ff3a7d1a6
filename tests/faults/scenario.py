"""Steps shared by the scenarios: prepare a database for a workload, wait until the
consumers have recorded every event, settle the parked ones, compare with the oracle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass

import asyncpg
import httpx

from tests.faults import dbstate, logscan
from tests.faults.dbstate import Comparison
from tests.faults.harness import Harness
from tests.faults.oracle import Expected, expect
from tests.faults.workload import Workload


@dataclass(frozen=True, slots=True)
class Settled:
    comparison: Comparison
    expected: Expected
    caught_up_s: float  # from the call until every event was recorded
    retries: int  # `ingester pending retry` runs needed


def known_ids(workload: Workload) -> set[tuple[str, str]]:
    return {(e.source, e.id) for e in workload.events if e.kind != "kit-legacy"}


async def wait_recorded(
    harness: Harness,
    workload: Workload,
    timeout: float = 180.0,
    sources: Collection[str] | None = None,
) -> float:
    """Seconds until every event (of ``sources``, by default all) is in the inbox, parked or
    skipped."""
    known = {k for k in known_ids(workload) if sources is None or k[0] in sources}
    kit = sources is None or "kit" in sources
    legacy = sum(e.kind == "kit-legacy" for e in workload.events) if kit else 0
    started = time.monotonic()
    conn = await asyncpg.connect(harness.database_url)
    try:
        while True:
            seen = await dbstate.processed_ids(conn)
            missing = known - seen
            if not missing and len(dbstate.legacy_ids(seen, known)) >= legacy:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{len(missing)} events never recorded, e.g. {sorted(missing)[:5]}"
                )
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def settle(harness: Harness, workload: Workload, timeout: float = 180.0) -> Settled:
    """Wait until every event is recorded, run `ingester pending retry` until the parked
    events are exactly those that can never apply, and compare with the oracle."""
    caught_up = await wait_recorded(harness, workload, timeout)
    expected = expect(workload)
    conn = await asyncpg.connect(harness.database_url)
    retries = 0
    try:
        while retries < 5:
            retries += 1
            done = harness.cli("pending", "retry")
            assert done.returncode == 0, done.stderr
            actual = await dbstate.read(conn, workload.people)
            if actual.pending <= expected.pending | _legacy(actual.pending, workload):
                break
        comparison = dbstate.compare(expected, await dbstate.read(conn, workload.people))
    finally:
        await conn.close()
    return Settled(comparison, expected, caught_up, retries)


def _legacy(ids: set[tuple[str, str]], workload: Workload) -> set[tuple[str, str]]:
    return dbstate.legacy_ids(ids, known_ids(workload))


async def scrape_metrics(harness: Harness) -> None:
    """Save every live child's /metrics next to the logs, so labels are scanned too."""
    async with httpx.AsyncClient(timeout=3.0) as client:
        for child in harness.children:
            if not child.alive():
                continue
            try:
                text = (await client.get(f"http://127.0.0.1:{child.port}/metrics")).text
            except httpx.HTTPError:
                continue
            (harness.log_dir / f"metrics-{child.name}.txt").write_text(text)


async def check_logs(harness: Harness, workload: Workload | None = None) -> int:
    """Assert that no log line or metric of the scenario leaks a secret or PII; returns the
    lines read."""
    await scrape_metrics(harness)
    pii = (
        [p.email for p in workload.people] + [p.phone for p in workload.people] if workload else []
    )
    lines, leaks = logscan.scan(logscan.files(harness.log_dir), pii)
    assert not leaks, f"{len(leaks)} leaking log lines, e.g. {leaks[:5]}"
    return lines


def report(title: str, figures: dict[str, object]) -> None:
    print(f"\n== {title}")
    for name, value in figures.items():
        print(f"   {name}: {value}")
