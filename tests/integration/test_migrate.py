"""``ingester migrate`` against a real PostgreSQL: order, idempotence, locking, refusals."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from core import migrate

FIRST = """
CREATE TABLE counter (n integer NOT NULL);
INSERT INTO counter VALUES (1);
SELECT pg_sleep(0.3);
"""
SECOND = "CREATE TABLE second_one (id integer PRIMARY KEY); UPDATE counter SET n = n + 1;"


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def applied_versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]
    finally:
        await conn.close()


async def test_applies_in_order_then_is_a_no_op(empty_database_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "sql", {"0001_first.sql": FIRST, "0002_second.sql": SECOND})

    first = await migrate.migrate(empty_database_url, directory)
    second = await migrate.migrate(empty_database_url, directory)

    assert [m.version for m in first] == [1, 2]
    assert second == []
    assert await applied_versions(empty_database_url) == [1, 2]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT n FROM counter") == 2
    finally:
        await conn.close()


async def test_project_migrations_apply_from_zero_and_once(empty_database_url: str) -> None:
    first = await migrate.migrate(empty_database_url, migrate.default_dir())
    again = await migrate.migrate(empty_database_url, migrate.default_dir())

    assert len(first) == len(migrate.discover(migrate.default_dir())) > 0
    assert again == []


async def test_failed_migration_rolls_back_alone(empty_database_url: str, tmp_path: Path) -> None:
    directory = write(
        tmp_path / "sql",
        {"0001_first.sql": FIRST, "0002_broken.sql": "CREATE TABLE x (id int); SELECT 1/0;"},
    )

    with pytest.raises(migrate.MigrationError, match=r"0002_broken\.sql failed"):
        await migrate.migrate(empty_database_url, directory)

    assert await applied_versions(empty_database_url) == [1]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('x')") is None
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    directory = write(tmp_path / "sql", {"0001_first.sql": FIRST})
    await migrate.migrate(empty_database_url, directory)
    write(directory, {"0001_first.sql": FIRST + "\n-- edited\n", "0002_second.sql": SECOND})

    with pytest.raises(migrate.MigrationError, match="edited after it was applied"):
        await migrate.migrate(empty_database_url, directory)
    assert await applied_versions(empty_database_url) == [1]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"0001_a.sql": "", "0003_c.sql": ""}, "gaps", id="gap in versions"),
        pytest.param({"0001_a.sql": "", "0001_b.sql": ""}, "appears twice", id="duplicate"),
        pytest.param({"1_a.sql": ""}, "NNNN_description", id="bad file name"),
    ],
)
def test_bad_migration_sets_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(migrate.MigrationError, match=message):
        migrate.discover(write(tmp_path / "sql", files))


async def test_concurrent_processes_apply_each_file_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    directory = write(tmp_path / "sql", {"0001_first.sql": FIRST, "0002_second.sql": SECOND})
    env = {**os.environ, "DATABASE_URL": empty_database_url, "MIGRATIONS_DIR": str(directory)}

    async def run() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingester.cli", "migrate",
            env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out + err

    results = await asyncio.gather(run(), run())

    assert [code for code, _ in results] == [0, 0], results
    outputs = b"".join(out for _, out in results)
    assert outputs.count(b"applied 0001_first") == 1
    assert outputs.count(b"applied 0002_second") == 1
    assert await applied_versions(empty_database_url) == [1, 2]
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT n FROM counter") == 2
    finally:
        await conn.close()
