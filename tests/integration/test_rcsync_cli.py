"""``ingester rc-sync --dry-run`` prints the calls a sweep would make and changes nothing;
``ingester standin revenuecat`` serves the stand-in ``make dev RC_SYNC=1`` calls."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import orjson

from core.devstack import free_port
from tests.integration.rcsync_helpers import API_KEY, Person, add_people, eventually
from tests.unit.test_cli import run_cli


async def test_dry_run_prints_the_calls_and_changes_nothing(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await add_people(
        pool,
        [
            Person("u_rc_same", "same@example.com").in_sync(),
            Person("u_rc/new", "new@example.com", first_name="Nova"),
        ],
    )
    before = await pool.fetchval(
        "SELECT string_agg(revenue_cat_attributes, ',') FROM user_revenue_cat_ids"
    )

    result = await asyncio.to_thread(
        run_cli, "rc-sync", "--dry-run", cwd=tmp_path, env={"DATABASE_URL": database_url}
    )

    assert result.returncode == 0, result.stderr
    call, summary = result.stdout.splitlines()
    method, url, body = call.split(" ", 2)
    assert (method, url) == (
        "POST",
        "https://api.revenuecat.com/v1/subscribers/u_rc%2Fnew/attributes",
    )
    values = {k: v["value"] for k, v in orjson.loads(body)["attributes"].items()}
    assert values == {"$email": "new@example.com", "$displayName": "Nova", "environment": "dev"}
    assert summary == "1 call(s) would be made; nothing was sent or written"
    assert await pool.fetchval("SELECT count(*) FROM ingest_rc_sync") == 0
    after = await pool.fetchval(
        "SELECT string_agg(revenue_cat_attributes, ',') FROM user_revenue_cat_ids"
    )
    assert after == before


async def test_the_stand_in_verb_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingester.cli", "standin", "revenuecat", "--port", str(port)],
        cwd=tmp_path,
        env={"REVENUECAT_API_KEY": API_KEY, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/subscribers/u_rc_1"
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as client:

            async def answered() -> httpx.Response | None:
                try:
                    return await client.post(
                        url + "/attributes",
                        json={
                            "attributes": {"$email": {"value": "a@example.com", "updated_at_ms": 5}}
                        },
                    )
                except httpx.TransportError:
                    return None

            posted = await eventually(answered, timeout_s=30)
            shown = await client.get(url)
            refused = await client.get(url, headers={"Authorization": "Bearer wrong"})
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0

    assert posted.status_code == 200
    attributes = shown.json()["subscriber"]["subscriber_attributes"]
    assert attributes == {"$email": {"value": "a@example.com", "updated_at_ms": 5}}
    assert refused.status_code == 401
