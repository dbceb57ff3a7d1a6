"""Topic names (docs/contract.md §5) and their idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings

# Logical streams, in the order the topics are documented.
STREAMS = ("revenuecat", "klaviyo", "kit", "experiments")
DLQ = "dlq"


def topic_name(prefix: str, stream: str) -> str:
    """``{prefix}ingest.{stream}.v1`` -- the public topic name of a stream (or ``dlq``)."""
    return f"{prefix}ingest.{stream}.v1"


def all_topics(prefix: str) -> tuple[str, ...]:
    return tuple(topic_name(prefix, s) for s in (*STREAMS, DLQ))


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
