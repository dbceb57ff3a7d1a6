"""Idempotent creation of the topics; their names are the contract's (``contract.topics``)."""

from __future__ import annotations

from dataclasses import dataclass

from contract.topics import all_topics
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class TopicsResult:
    created: tuple[str, ...]
    existing: tuple[str, ...]


async def create_topics(settings: Settings) -> TopicsResult:
    """Create every topic that does not exist yet; existing ones are left untouched."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.require_kafka())
    await admin.start()
    try:
        present = set(await admin.list_topics())
        wanted = all_topics(settings.topic_prefix)
        missing = [t for t in wanted if t not in present]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication_factor,
                    )
                    for t in missing
                ]
            )
        return TopicsResult(
            created=tuple(missing), existing=tuple(t for t in wanted if t in present)
        )
    finally:
        await admin.close()
