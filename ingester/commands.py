"""The CLI verbs that belong to the shared plumbing: ``migrate`` and ``topics create``."""

from __future__ import annotations

import sys

from core import migrate
from core.settings import Settings
from core.topics import create_topics


def _fail(verb: str, message: str) -> int:
    print(f"ingester {verb}: {' '.join(message.split())}", file=sys.stderr)
    return 1


async def migrate_command(settings: Settings) -> int:
    dsn = settings.require_database_url()
    try:
        applied = await migrate.migrate(dsn, migrate.migrations_dir(settings))
    except (migrate.MigrationError, migrate.DatabaseUnreachable) as exc:
        return _fail("migrate", str(exc))
    if applied:
        for migration in applied:
            print(f"applied {migration.name}")
    else:
        print("database is up to date")
    return 0


async def topics_create_command(settings: Settings) -> int:
    from aiokafka.errors import KafkaError

    bootstrap = settings.require_kafka()
    try:
        result = await create_topics(settings)
    except (KafkaError, OSError) as exc:
        name = type(exc).__name__
        reason = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
        return _fail("topics create", f"cannot create topics on {bootstrap}: {reason}")
    for topic in result.created:
        print(f"created {topic}")
    for topic in result.existing:
        print(f"exists  {topic}")
    return 0
