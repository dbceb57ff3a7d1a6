"""The handler example of the README, run as written with the runtime."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any

import asyncpg

from consumers.service import run_service
from core.settings import Settings
from ingest.providers import kit
from tests.support import publish

DOC = Path(__file__).resolve().parents[2] / "README.md"
FAST_GROUP = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 500}


def documented_handler() -> Any:
    text = DOC.read_text()
    section = text[text.index("## Writing your own handler") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the handler example is missing from README.md"
    namespace: dict[str, Any] = {"__name__": "crm_example"}
    exec(compile(code.group(1), str(DOC), "exec"), namespace)
    return namespace["UnsubscribesPerDay"]()


def kit_event(type_: str, day: int) -> dict[str, Any]:
    return {
        "id": f"kit-{secrets.token_hex(6)}",
        "type": type_,
        "created": f"2024-05-{day:02d}T10:00:00Z",
        "data": {"subscriber": {"id": 1, "email_address": "crm@example.com"}},
    }


async def test_the_documented_handler_counts_exactly_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    await pool.execute("CREATE TABLE crm_unsubscribes (day date PRIMARY KEY, events int NOT NULL)")
    events = [
        kit_event("subscriber.unsubscribed", 1),
        kit_event("subscriber.unsubscribed", 1),
        kit_event("subscriber.activated", 1),
        kit_event("subscriber.unsubscribed", 2),
    ]
    records = kit.build_records({"delivery_id": 1, "events": events}, "2024-06-01T00:00:00Z")
    bootstrap = settings.kafka_bootstrap_servers or ""
    await publish(bootstrap, settings.topic_prefix, [*records, records[0]])  # one redelivery

    crm = settings.with_overrides(consumer_group=f"{settings.consumer_group}-crm")
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_service(
            crm, [documented_handler()], scope="crm", consumer_options=FAST_GROUP, stop=stop
        )
    )
    try:
        deadline = time.monotonic() + 20
        while await pool.fetchval("SELECT count(*) FROM ingest_inbox") < len(records):
            assert time.monotonic() < deadline, "the documented handler applied nothing"
            assert not service.done(), service
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        assert await service == 0
    rows = await pool.fetch("SELECT day, events FROM crm_unsubscribes ORDER BY day")
    assert [(r["day"].day, r["events"]) for r in rows] == [(1, 2), (2, 1)]
    sources = await pool.fetch("SELECT DISTINCT source FROM ingest_inbox")
    assert [r["source"] for r in sources] == ["crm/kit"]
