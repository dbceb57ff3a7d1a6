"""RevenueCat purchases as experiment conversions (SPEC section 6, Experiments)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from consumers.types import Context, Event


async def record_purchases(
    conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
) -> None:
    """Turn applied RevenueCat purchase events into conversions for every experiment the
    purchasing person participates in. Called by the RevenueCat handler inside its transaction
    with the events it applied; events that are not purchases are ignored."""
    return None
