"""The installed version of the project, for ``ingester --version`` and the OpenAPI document."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "webhook-ingester"


def version() -> str:
    """The installed distribution's version; ``unknown`` when run from a tree that was never
    installed (no metadata to read)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
