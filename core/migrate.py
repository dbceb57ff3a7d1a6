"""Forward-only SQL migrations from ``sql/``: ordered, each once, each in its own transaction.

Files are named ``NNNN_description.sql``. Applied versions are recorded with a checksum in
``schema_migrations``; an applied file that was edited, or a gap in the numbering, stops the
run before anything changes. A session advisory lock makes concurrent runs (several pods
starting at once) safe: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from core.settings import Settings

# An arbitrary constant shared by every process that migrates this database.
ADVISORY_LOCK_KEY = 0x1A6E57_0001
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are; nothing was changed."""


class DatabaseUnreachable(RuntimeError):
    """The database did not accept a connection."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "sql"


def migrations_dir(settings: Settings) -> Path:
    return Path(settings.migrations_dir) if settings.migrations_dir else default_dir()


def discover(directory: Path) -> list[Migration]:
    """Read and order the migration files; refuse strays, duplicates and gaps."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} appears twice")
        found[version] = Migration(version, path.stem, path.read_text())
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        missing = sorted(set(range(1, (versions[-1] if versions else 0) + 1)) - set(versions))
        raise MigrationError(f"migration versions have gaps: missing {missing}")
    return [found[v] for v in versions]


def describe_target(dsn: str) -> str:
    """``host:port/db`` of a DSN, for error messages (never the password)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    if parts.query and "host=" in parts.query:
        host = parts.query.split("host=", 1)[1].split("&", 1)[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


async def connect(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot connect to database at {describe_target(dsn)}: {reason}"
        ) from exc


# What a lost connection, a refused statement or a dead server raises mid-run.
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@contextlib.asynccontextmanager
async def _step(what: str) -> AsyncIterator[None]:
    """Turn a database error during ``what`` into a one-line :class:`MigrationError`."""
    try:
        yield
    except _DB_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "connection lost"
        raise MigrationError(f"{what} failed: {type(exc).__name__}: {reason}") from exc


async def migrate(dsn: str, directory: Path) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    migrations = discover(directory)
    conn = await connect(dsn)
    try:
        async with _step("taking the migration lock (pg_advisory_lock)"):
            await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        try:
            return await _apply(conn, migrations)
        finally:
            # Closing the session releases the lock too; a failed unlock must not hide
            # the error that brought us here.
            with contextlib.suppress(*_DB_ERRORS):
                await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    finally:
        with contextlib.suppress(*_DB_ERRORS):
            await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    async with _step("creating the migrations ledger schema_migrations"):
        await conn.execute(CREATE_LEDGER)
    async with _step("reading schema_migrations"):
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
    _check_history(migrations, applied)
    done: list[Migration] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        async with _step(f"{migration.name}.sql"), conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                RECORD_MIGRATION, migration.version, migration.name, migration.checksum
            )
        done.append(migration)
    return done


def _check_history(migrations: list[Migration], applied: dict[int, str]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"database has migration {version} applied but no such file exists"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.name}.sql was edited after it was applied (checksum differs);"
                " write a new migration instead"
            )
