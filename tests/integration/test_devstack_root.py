"""The embedded stack as root from a clone in a private folder (``/root`` is 0700).

PostgreSQL runs as ``nobody`` from a folder the stack creates for itself; no folder it did
not create changes mode or owner.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import stat
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from core import devstack, pghome

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="checks what a run as root does (server user, folders, modes); not root here",
)


def modes(path: Path) -> dict[Path, tuple[int, int]]:
    """(mode, owner) of ``path`` and every parent."""
    return {p: (p.stat().st_mode, p.stat().st_uid) for p in (path, *path.parents)}


def server_user(data_dir: Path) -> str:
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    name: str = psutil.Process(pid).username()
    return name


@pytest.fixture
def private_clone(tmp_path: Path) -> Path:
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    clone = private / "clone"
    clone.mkdir()
    return clone


async def test_stack_runs_from_a_private_folder_and_changes_no_outside_mode(
    private_clone: Path,
) -> None:
    state = private_clone / ".dev"
    before = modes(private_clone)

    stack = await asyncio.to_thread(
        devstack.start_stack, state, database_url=None, bootstrap=None, fast=True
    )
    try:
        assert stack.postgres is not None
        conn = await asyncpg.connect(stack.database_url)
        try:
            data_directory = await conn.fetchval("SELECT current_setting('data_directory')")
        finally:
            await conn.close()
        user = server_user(stack.postgres.data_dir)
    finally:
        await asyncio.to_thread(stack.stop)

    assert modes(private_clone) == before
    assert stat.S_IMODE(private_clone.parent.stat().st_mode) == 0o700
    assert user == pghome.SERVER_USER
    link = state / "pgdata"
    data = Path(data_directory)
    assert link.is_symlink() and link.resolve() == data
    assert data.parent == pghome.base_dir()
    assert stat.S_IMODE(pghome.base_dir().stat().st_mode) == 0o755
    assert pghome.base_dir().stat().st_uid == 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert data.stat().st_uid == pwd.getpwnam(pghome.SERVER_USER).pw_uid

    await asyncio.to_thread(devstack.remove_dir, state)
    assert not data.exists(), "removing the state folder removes the data kept for it"


async def test_data_kept_across_restarts_and_dropped_with_its_link(private_clone: Path) -> None:
    link = private_clone / ".dev" / "pgdata"
    server = devstack.EmbeddedPostgres(link, fast=True)
    await server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        await conn.execute("CREATE TABLE kept (id int)")
        await conn.close()
        await server.stop()
        await server.start()
        conn = await asyncpg.connect(server.dsn)
        assert await conn.fetchval("SELECT to_regclass('kept') IS NOT NULL")
        await conn.close()
    finally:
        await server.stop()

    # `rm -rf .dev` drops the link: the next start is a fresh database, not the old one.
    link.unlink()
    await server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        assert await conn.fetchval("SELECT to_regclass('kept') IS NULL")
        await conn.close()
    finally:
        await server.stop()
        await asyncio.to_thread(devstack.remove_dir, private_clone)


async def test_a_start_removes_data_whose_link_is_gone(private_clone: Path) -> None:
    orphaned = devstack.EmbeddedPostgres(private_clone / "killed-run" / "pgdata", fast=True)
    await orphaned.start()  # left running, as by a killed test session
    (private_clone / "killed-run" / "pgdata").unlink()
    # Older than the grace period that protects a server being set up right now.
    owner = orphaned.data_dir.with_name(orphaned.data_dir.name + ".owner")
    past = time.time() - pghome.ORPHAN_GRACE_S - 1
    os.utime(owner, (past, past))

    # One whose link is gone only a moment ago may be a server being set up: kept.
    young = devstack.EmbeddedPostgres(private_clone / "young-run" / "pgdata", fast=True)
    await young.start()
    await young.stop()
    (private_clone / "young-run" / "pgdata").unlink()

    server = devstack.EmbeddedPostgres(private_clone / "next-run" / "pgdata", fast=True)
    await server.start()
    try:
        assert not orphaned.running()
        assert not orphaned.data_dir.exists()
        assert young.data_dir.exists()
    finally:
        await server.stop()
        await asyncio.to_thread(devstack.remove_dir, private_clone)
        shutil.rmtree(young.data_dir)
        young.data_dir.with_name(young.data_dir.name + ".owner").unlink()


def test_a_real_data_directory_is_refused_not_chmodded(private_clone: Path) -> None:
    data = private_clone / ".dev" / "pgdata"
    data.mkdir(parents=True, mode=0o700)
    (data / "PG_VERSION").write_text("18\n")
    before = modes(data)

    with pytest.raises(devstack.StackError, match="remove it to start over"):
        devstack.EmbeddedPostgres(data).start_sync()
    assert modes(data) == before
