"""CLI failures that need a real database: an unknown experiment, a migration lock that
cannot be taken, a ledger that cannot be created. Each is exit 1 and one line on stderr."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core import migrate
from tests.conftest import SessionStack
from tests.unit.test_cli import one_line, run_cli


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _with_setting(dsn: str, name: str, value: str) -> str:
    # asyncpg passes unknown DSN query parameters on as server settings.
    return dsn + ("&" if "?" in dsn else "?") + f"{name}={value}"


async def test_unknown_experiment(database_url: str, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_cli, "experiments", "report", "nope", cwd=tmp_path, env={"DATABASE_URL": database_url}
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert one_line(result) == "ingester experiments report: unknown experiment 'nope'"


async def test_migrate_waiting_for_a_held_lock_times_out_in_one_line(
    empty_database_url: str, tmp_path: Path
) -> None:
    holder = await asyncpg.connect(empty_database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.ADVISORY_LOCK_KEY)
        dsn = _with_setting(empty_database_url, "lock_timeout", "200")

        result = await asyncio.to_thread(
            run_cli, "migrate", cwd=tmp_path, env={"DATABASE_URL": dsn}
        )
    finally:
        await holder.close()

    assert result.returncode == 1
    assert one_line(result).startswith(
        "ingester migrate: taking the migration lock (pg_advisory_lock) failed:"
        " LockNotAvailableError"
    )


async def test_migrate_without_create_privilege_is_one_line(
    stack: SessionStack, empty_database_url: str, tmp_path: Path
) -> None:
    role = f"cli_reader_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        env = {"DATABASE_URL": _as_user(empty_database_url, role)}

        result = await asyncio.to_thread(run_cli, "migrate", cwd=tmp_path, env=env)
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()

    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(
        "ingester migrate: creating the migrations ledger schema_migrations failed:"
        " InsufficientPrivilegeError"
    )
    assert "permission denied for schema public" in line
