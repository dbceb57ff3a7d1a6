"""Notification-stats contention: Klaviyo-shaped transactions from parallel writers.

``python -m bench.stats_bench [--writers 4] [--transactions 40] [--batch 50] [--repeat 3]``

Each writer stands for one consumer partition: it commits transactions shaped like a
Klaviyo batch (create the profiles of ``batch`` users who already have settings, record the
profile versions, flip one consent of each, record the setting versions, write the inbox
rows), every writer on its own users. The same load runs against two databases on one
durable embedded PostgreSQL: one migrated without 0005 (the global advisory lock of 0001)
and one with it (per-user locks, counters folded at commit), each with one writer and then
with ``--writers``, ``--repeat`` times interleaved. Printed: every rate, the medians and
the ratios of the medians measured in this run. Not part of ``python -m bench``: it
measures the database alone, no broker, no consumer process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.procs import Cleanup
from bench.stats import ratio
from core.devstack import EmbeddedPostgres
from core.migrate import default_dir, migrate

# Migrations up to this one still have the global lock of 0001; 0005 replaced it.
GLOBAL_LOCK_UNTIL = 4

SEED_USERS = """
WITH u AS (
    INSERT INTO users (uid, email)
    SELECT 'usr_' || n, 'u' || n || '@example.com' FROM generate_series(1, $1) AS n
    RETURNING id
)
INSERT INTO user_notification_settings (user_id, channel, enabled)
SELECT u.id, c.channel, c.channel = 'email' FROM u, unnest(ARRAY['email', 'sms']) AS c (channel)
"""

INSERT_PROFILES = """
INSERT INTO user_klaviyo_profiles
    (uid, klaviyo_id, user_id, email, timezone, environment, created_at, updated_at)
SELECT 'ukp_' || u.id, 'K' || u.id, u.id, u.email, 'UTC', 'dev', 1, 1
FROM users AS u WHERE u.id = ANY ($1::integer[])
"""

UPSERT_PROFILE_VERSIONS = """
INSERT INTO ingest_klaviyo_profile_versions AS v (klaviyo_id, event_time)
SELECT 'K' || id, now() FROM unnest($1::integer[]) AS id
ON CONFLICT (klaviyo_id) DO UPDATE SET event_time = greatest(v.event_time, EXCLUDED.event_time)
"""

FLIP_CONSENT = """
INSERT INTO user_notification_settings AS s (user_id, channel, enabled)
SELECT id, 'sms', true FROM unnest($1::integer[]) AS id
ON CONFLICT (user_id, channel) DO UPDATE
SET enabled = EXCLUDED.enabled, updated_at = extract(epoch FROM now())
WHERE s.enabled IS DISTINCT FROM EXCLUDED.enabled
"""

UPSERT_SETTING_VERSIONS = """
INSERT INTO ingest_notification_setting_versions AS v (user_id, channel, event_time)
SELECT id, 'sms', now() FROM unnest($1::integer[]) AS id
ON CONFLICT (user_id, channel) DO UPDATE
SET event_time = greatest(v.event_time, EXCLUDED.event_time)
"""

INSERT_INBOX = """
INSERT INTO ingest_inbox (source, event_id, topic, partition, "offset")
SELECT 'klaviyo', k || id, 'bench', $2, 0
FROM unnest($1::integer[]) AS id, unnest(ARRAY['profile-', 'consent-']) AS k
"""

STEPS = (INSERT_PROFILES, UPSERT_PROFILE_VERSIONS, FLIP_CONSENT, UPSERT_SETTING_VERSIONS)

TRUTH_DRIFT = """
SELECT count(*) FROM (
    SELECT s.channel, s.enabled, count(*) AS users
    FROM user_notification_settings AS s JOIN user_klaviyo_profiles AS p USING (user_id)
    GROUP BY 1, 2
    EXCEPT SELECT channel, enabled, users FROM user_notification_setting_stats WHERE users > 0
) AS d
"""


@dataclass(frozen=True, slots=True)
class Load:
    writers: int
    transactions: int  # per writer
    batch: int  # users per transaction; two events each


async def writer(dsn: str, index: int, ids: list[int], load: Load) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for t in range(load.transactions):
            chunk = ids[t * load.batch : (t + 1) * load.batch]
            async with conn.transaction():
                for statement in STEPS:
                    await conn.execute(statement, chunk)
                await conn.execute(INSERT_INBOX, chunk, index)
    finally:
        await conn.close()


async def run_once(admin: str, base: str, name: str, migrations: Path, load: Load) -> float:
    """Events per second of `load` on a fresh database `name`."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = f"{base}/{name}"
    await migrate(dsn, migrations)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SEED_USERS, load.writers * load.transactions * load.batch)
        await conn.execute("VACUUM ANALYZE")
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id")]
    finally:
        await conn.close()
    per_writer = load.transactions * load.batch
    started = time.perf_counter()
    await asyncio.gather(
        *(
            writer(dsn, i, ids[i * per_writer : (i + 1) * per_writer], load)
            for i in range(load.writers)
        )
    )
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval(TRUTH_DRIFT):
            raise RuntimeError(f"{name}: the stats do not match a recount")
    finally:
        await conn.close()
    return 2 * load.writers * per_writer / elapsed


async def measure(
    postgres: EmbeddedPostgres, workdir: Path, load: Load, repeat: int
) -> dict[str, object]:
    partial = workdir / "migrations-global-lock"
    partial.mkdir()
    for path in sorted(default_dir().glob("*.sql")):
        if int(path.name.split("_", 1)[0]) <= GLOBAL_LOCK_UNTIL:
            shutil.copy(path, partial / path.name)
    base = f"postgresql://postgres@127.0.0.1:{postgres.port}"
    runs: dict[str, list[float]] = {}
    for round_ in range(repeat):  # interleaved, so a burst of outside load hits every case
        for design, migrations in (("global_lock", partial), ("per_user", default_dir())):
            for writers in (1, load.writers):
                key = f"{design}_{writers}w"
                one = Load(writers, load.transactions, load.batch)
                rate = await run_once(postgres.dsn, base, f"{key}_{round_}", migrations, one)
                runs.setdefault(key, []).append(round(rate, 1))
                print(f"  {key}: {rate:,.0f} events/s", file=sys.stderr, flush=True)
    rates = {key: statistics.median(values) for key, values in runs.items()}
    n = load.writers

    def ratio2(a: str, b: str) -> float | None:
        value = ratio(rates[a], rates[b])
        return None if value is None else round(value, 2)

    return {
        "load": {"writers": n, "transactions": load.transactions, "batch": load.batch},
        "repeat": repeat,
        "events_per_s": rates,  # medians
        "runs": runs,
        "scaling_global_lock": ratio2(f"global_lock_{n}w", "global_lock_1w"),
        "scaling_per_user": ratio2(f"per_user_{n}w", "per_user_1w"),
        "per_user_vs_global_lock": ratio2(f"per_user_{n}w", f"global_lock_{n}w"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stats_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--writers", type=int, default=4, help="parallel writers (4)")
    parser.add_argument("--transactions", type=int, default=40, help="per writer (40)")
    parser.add_argument("--batch", type=int, default=50, help="users per transaction (50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case; medians (3)")
    args = parser.parse_args(argv)
    if min(args.writers, args.transactions, args.batch, args.repeat) < 1:
        print("stats_bench: every option must be >= 1", file=sys.stderr)
        return 2
    cleanup = Cleanup()
    try:
        workdir = cleanup.temp_dir("bench-stats-")
        postgres = EmbeddedPostgres(workdir / "pgdata")
        cleanup.add("stop PostgreSQL", postgres.stop_sync)
        postgres.start_sync()
        result = asyncio.run(
            measure(
                postgres, workdir, Load(args.writers, args.transactions, args.batch), args.repeat
            )
        )
    except KeyboardInterrupt:
        return 130
    finally:
        cleanup.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
