"""Where records go (docs/contract.md §5): the ``ce_source`` values, the logical stream each
source is published on, and the public topic names.

Ingest publishes a record to the topic of its source's stream; a consumer subscribes to the
topics of the sources it handles. Creating the topics is I/O and lives in ``core.topics``.
"""

from __future__ import annotations

# ce_source values
SOURCE_REVENUECAT = "revenuecat"
SOURCE_KLAVIYO = "klaviyo"
SOURCE_KIT = "kit"
SOURCE_APP = "app"

# ce_source -> logical stream, in the order the topics are documented.
STREAM_OF_SOURCE = {
    SOURCE_REVENUECAT: "revenuecat",
    SOURCE_KLAVIYO: "klaviyo",
    SOURCE_KIT: "kit",
    SOURCE_APP: "experiments",
}
STREAMS = tuple(STREAM_OF_SOURCE.values())
DLQ = "dlq"
SOURCE_OF_STREAM = {stream: source for source, stream in STREAM_OF_SOURCE.items()}


def topic_name(prefix: str, stream: str) -> str:
    """``{prefix}ingest.{stream}.v1`` -- the public topic name of a stream (or ``dlq``)."""
    return f"{prefix}ingest.{stream}.v1"


def all_topics(prefix: str) -> tuple[str, ...]:
    return tuple(topic_name(prefix, s) for s in (*STREAMS, DLQ))
