"""Email matching: one key, computed by the database.

``ingest_email_key(email)`` (``sql/0007_email_match_key.sql``) is a Unicode case folding that
does not depend on the database's ctype. Every match by email uses it on both sides (the
stored column through its index, the event's address through :func:`email_keys`), and so do
the wake-up keys of parked events (``user_email:``, ``profile_email:``), which the triggers
build with the same function. Python never case-maps an address it compares: its mappings
differ from the database's for some characters (final sigma, dotted capital I), and an event
matched by one and woken by the other would stay parked.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

EMAIL_KEYS = "SELECT e AS email, ingest_email_key(e) AS key FROM unnest($1::text[]) AS e"


async def email_keys(conn: asyncpg.Connection, emails: Iterable[str]) -> dict[str, str]:
    """The match key of each address (one statement for the whole batch)."""
    wanted = sorted(set(emails))
    if not wanted:
        return {}
    return {row["email"]: row["key"] for row in await conn.fetch(EMAIL_KEYS, wanted)}
