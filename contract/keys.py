"""Partition keys made from an email address: one folding for ingest, which keys Kit records
by the subscriber's email, and for the console, which finds a person's records by their keys.

The folding is the database's own email key where it is fullest (``ingest_email_key`` on
PostgreSQL 18 is Unicode case folding, docs/schema.md "Matching emails"): ``str.casefold``
makes ``Straße`` and ``STRASSE``, or a final and a medial sigma, one key, as the database
makes them one person, so their events share a partition and keep their order.
"""

from __future__ import annotations


def email_key(email: str) -> str:
    """The partition key of an email address: trimmed and Unicode case-folded."""
    return email.strip().casefold()
