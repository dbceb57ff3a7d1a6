"""Every HTTP endpoint that turns requests into records; adding a provider adds one line."""

from __future__ import annotations

from typing import Any

from ingest.endpoint import Endpoint
from ingest.providers import events, kit, kit_legacy, klaviyo, klaviyo_flow, revenuecat

ENDPOINTS: tuple[Endpoint[Any], ...] = (
    revenuecat.ENDPOINT,
    klaviyo.ENDPOINT,
    klaviyo_flow.ENDPOINT,
    kit.ENDPOINT,
    kit_legacy.ENDPOINT,
    events.ENDPOINT,
)
