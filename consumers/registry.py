"""ce_source -> the handler that applies it. Adding a provider: one handler module, one line.

``--only`` names streams (the topic names' middle part: revenuecat, klaviyo, kit,
experiments); the ``app`` source is the experiments stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from consumers.types import Handler
from contract.topics import (
    SOURCE_APP,
    SOURCE_KIT,
    SOURCE_KLAVIYO,
    SOURCE_OF_STREAM,
    SOURCE_REVENUECAT,
    STREAM_OF_SOURCE,
    STREAMS,
    topic_name,
)


def _revenuecat() -> Handler:
    from consumers.handlers.revenuecat import RevenueCatHandler

    return RevenueCatHandler()


def _klaviyo() -> Handler:
    from consumers.handlers.klaviyo import KlaviyoHandler

    return KlaviyoHandler()


def _kit() -> Handler:
    from consumers.handlers.kit import KitHandler

    return KitHandler()


def _experiments() -> Handler:
    from consumers.handlers.experiments import ExperimentsHandler

    return ExperimentsHandler()


FACTORIES: dict[str, Callable[[], Handler]] = {
    SOURCE_REVENUECAT: _revenuecat,
    SOURCE_KLAVIYO: _klaviyo,
    SOURCE_KIT: _kit,
    SOURCE_APP: _experiments,
}


class UnknownStream(ValueError):
    pass


def build_handlers(only: Iterable[str] = ()) -> dict[str, Handler]:
    """Handlers keyed by ce_source for the given streams (all of them when empty)."""
    streams = tuple(only) or STREAMS
    unknown = [s for s in streams if s not in SOURCE_OF_STREAM]
    if unknown:
        raise UnknownStream(
            f"unknown stream {', '.join(unknown)}; choose from {', '.join(STREAMS)}"
        )
    return {SOURCE_OF_STREAM[s]: FACTORIES[SOURCE_OF_STREAM[s]]() for s in streams}


def topics_for(topic_prefix: str, sources: Iterable[str]) -> list[str]:
    """The topics carrying the given sources' records."""
    return [topic_name(topic_prefix, STREAM_OF_SOURCE[source]) for source in sources]
