"""``ingester rc-sync`` and ``ingester standin revenuecat`` (docs/rc-sync.md).

rc-sync is off unless ``REVENUECAT_API_KEY`` is set: without it the verb says so in one line
and exits 1, like any verb missing what it needs (a Deployment without its Secret should
crash-loop and be seen, not run idle). ``--dry-run`` needs only the database: it prints, one
line per customer, the call a sweep would make now, and sends and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

import orjson

from core.errors import CommandError
from core.settings import ConfigError, Settings
from ingester.output import expected_failures

log = logging.getLogger("ingester.rc-sync")

STANDIN_PORT = 8010


async def rc_sync(
    settings: Settings, *, dry_run: bool, consumer_options: Mapping[str, Any] | None = None
) -> int:
    if dry_run:
        return await rc_sync_dry_run(settings)
    settings.require_database_url()
    settings.require_kafka()
    if not settings.revenuecat_api_key:
        raise CommandError(
            "REVENUECAT_API_KEY is not set, so rc-sync is off (`--dry-run` shows what it"
            " would send)"
        )
    from core import logs
    from rcsync.service import run_rc_sync

    logs.configure(settings.log_level)
    failures: tuple[type[BaseException], ...] = (ConfigError, CommandError, *expected_failures())
    try:
        return await run_rc_sync(settings, consumer_options=consumer_options)
    except failures as exc:
        log.critical("rc-sync stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise


async def rc_sync_dry_run(settings: Settings) -> int:
    from consumers import db
    from rcsync.api import attributes_path
    from rcsync.sweep import plan

    base = settings.revenuecat_api_url.rstrip("/")
    pool = await db.create_pool(settings)
    calls = 0
    try:
        async for rc_id, body in plan(pool, settings.environment, settings.rc_sync_sweep_rows):
            payload = orjson.dumps({"attributes": body}).decode()
            print(f"POST {base}{attributes_path(rc_id)} {payload}", flush=True)
            calls += 1
    finally:
        await pool.close()
    print(f"{calls} call(s) would be made; nothing was sent or written", flush=True)
    return 0


async def standin_revenuecat(settings: Settings, port: int) -> int:
    """The RevenueCat stand-in on loopback until SIGTERM/SIGINT; it accepts the key
    ``REVENUECAT_API_KEY`` names (any key when unset)."""
    from core import logs
    from rcsync.standin import RevenueCatStandIn, StandInServer

    logs.configure(settings.log_level)
    server = StandInServer(RevenueCatStandIn(settings.revenuecat_api_key), port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("RevenueCat stand-in serving", extra={"url": server.url})
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0
