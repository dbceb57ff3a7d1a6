"""The CLI verbs that belong to the shared plumbing: ``migrate`` and ``topics create``."""

from __future__ import annotations

from core import migrate
from core.errors import CommandError
from core.settings import Settings
from core.topics import create_topics
from ingester.output import named


async def migrate_command(settings: Settings) -> int:
    """Apply the pending migrations; a refused or unreachable database raises
    :class:`core.migrate.MigrationError` / :class:`core.migrate.DatabaseUnreachable`."""
    dsn = settings.require_database_url()
    applied = await migrate.migrate(dsn, migrate.migrations_dir(settings))
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
        raise CommandError(f"cannot create topics on {bootstrap}: {named(exc)}") from exc
    for topic in result.created:
        print(f"created {topic}")
    for topic in result.existing:
        print(f"exists  {topic}")
    return 0
