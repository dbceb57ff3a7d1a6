"""Refunds against the experiments a purchase converted in (docs/experiments.md, "Refunds").

A refund is stored as a ``conversions`` row of ``conversion_type = 'refund'`` worth the
refunded amount (positive: the column's check forbids negatives), next to each conversion of
the refunded purchase: same user, experiment and variant, ``details`` naming the refund's and
the purchase's RevenueCat events. It is not a conversion: it sets nothing on the
participation and has no attribution row. The report subtracts it from net revenue.

The rows follow the ledger rather than the order events arrive in: for each transaction, the
latest of its refunds and reversals (by event time, then event id) decides. When it is a
refund, every conversion of the transaction's purchases has that refund's row; otherwise
(reversed) none has. :func:`sync` brings the rows there; it runs after a refund or reversal
is recorded and after a purchase converts (a refund recorded before its purchase, or before
a participation that converts it, applies then). Row ids derive from the refund and the
purchase conversion, so a redelivery changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg
import orjson

from consumers.handlers.experiment_items import DEFAULT_WINDOW_DAYS
from consumers.handlers.ledger import money_of_row
from consumers.handlers.purchases import ATTRIBUTION_SOURCE, PURCHASE, REFUND, Money

REFUND_CONVERSION_TYPE = "refund"
REFUND_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:webhook-ingester:revenuecat-refund")

SELECT_TRANSACTIONS = """
SELECT event_id, kind, revenue_cat_ids, occurred_at, amount, transaction_id,
       details::text AS details
FROM ingest_revenuecat_ledger WHERE transaction_id = ANY($1::text[])
"""

# The conversions of the given purchases (by RevenueCat event id).
SELECT_PURCHASE_CONVERSIONS = """
SELECT id, user_id, experiment_id, variant_id, original_exposure_date, conversion_window_days,
       details ->> 'revenuecat_event_id' AS purchase_event_id
FROM conversions
WHERE details ? 'revenuecat_event_id' AND details ->> 'revenuecat_event_id' = ANY($1::text[])
  AND conversion_type = 'purchase'
"""

# Refund rows of the given refund events that are no longer wanted.
DELETE_REFUNDS = """
DELETE FROM conversions
WHERE details ? 'revenuecat_event_id' AND details ->> 'revenuecat_event_id' = ANY($1::text[])
  AND conversion_type = 'refund' AND NOT (id = ANY($2::uuid[]))
"""

INSERT_REFUNDS = """
INSERT INTO conversions (id, user_id, experiment_id, variant_id, created_at, conversion_type,
    conversion_value, conversion_window_days, time_to_convert,
    is_first_conversion_for_experiment, original_exposure_date,
    conversion_eligibility_verified, conversion_attribution_source, details)
SELECT i, u, e, v, t, 'refund', a, w, extract(epoch FROM t - o)::int4, false, o, true, $10,
       d::jsonb
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[],
            $6::numeric[], $7::int4[], $8::timestamptz[], $9::text[])
     AS x(i, u, e, v, t, a, w, o, d)
ON CONFLICT (id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Converted:
    """One conversion of a purchase, as a refund row copies it."""

    id: uuid.UUID
    user_id: uuid.UUID
    experiment_id: uuid.UUID
    variant_id: uuid.UUID
    exposed_at: datetime  # original_exposure_date
    window_days: int
    purchase_event_id: str


@dataclass(frozen=True, slots=True)
class RefundRow:
    id: uuid.UUID
    of: Converted
    at: datetime
    amount: Decimal
    details: Mapping[str, object]


def converted_of(row: asyncpg.Record) -> Converted:
    return Converted(
        row["id"],
        row["user_id"],
        row["experiment_id"],
        row["variant_id"],
        row["original_exposure_date"],
        row["conversion_window_days"] or DEFAULT_WINDOW_DAYS,
        row["purchase_event_id"],
    )


def deciding(entries: Iterable[Money]) -> Money | None:
    """The refund in force for one transaction's ledger entries: the latest of its refunds
    and reversals when that is a refund, else None."""
    latest = max(
        (m for m in entries if m.kind != PURCHASE), key=lambda m: (m.at, m.event_id), default=None
    )
    return latest if latest is not None and latest.kind == REFUND else None


def refund_row(refund: Money, conversion: Converted) -> RefundRow:
    """The refund row next to one conversion of the refunded purchase."""
    details = {
        **refund.details,
        "refunded_event_id": conversion.purchase_event_id,
        "refunded_conversion_id": str(conversion.id),
    }
    row_id = uuid.uuid5(REFUND_NAMESPACE, f"{refund.event_id}/{conversion.id}")
    return RefundRow(row_id, conversion, refund.at, refund.amount, details)


async def sync(conn: asyncpg.Connection, transactions: Iterable[str | None]) -> None:
    """Make the refund rows of ``transactions`` what their ledger entries say (see the
    module docstring). A few statements for the whole batch, only when a transaction has a
    refund or reversal."""
    wanted = sorted({t for t in transactions if t})
    if not wanted:
        return
    by_transaction: dict[str, list[Money]] = {}
    for row in await conn.fetch(SELECT_TRANSACTIONS, wanted):
        by_transaction.setdefault(row["transaction_id"], []).append(money_of_row(row))
    refunds_of = {t: e for t, e in by_transaction.items() if any(m.kind != PURCHASE for m in e)}
    if not refunds_of:
        return
    in_force = {t: deciding(entries) for t, entries in refunds_of.items()}
    purchase_of = {
        m.event_id: t for t, entries in refunds_of.items() for m in entries if m.kind == PURCHASE
    }
    rows: list[RefundRow] = []
    if purchase_of:
        for conversion in await conn.fetch(SELECT_PURCHASE_CONVERSIONS, sorted(purchase_of)):
            refund = in_force[purchase_of[conversion["purchase_event_id"]]]
            if refund is not None:
                rows.append(refund_row(refund, converted_of(conversion)))
    refund_ids = sorted(m.event_id for e in refunds_of.values() for m in e if m.kind == REFUND)
    await conn.execute(DELETE_REFUNDS, refund_ids, [r.id for r in rows])
    if rows:
        await _insert(conn, rows)


async def _insert(conn: asyncpg.Connection, rows: Sequence[RefundRow]) -> None:
    await conn.execute(
        INSERT_REFUNDS,
        [r.id for r in rows],
        [r.of.user_id for r in rows],
        [r.of.experiment_id for r in rows],
        [r.of.variant_id for r in rows],
        [r.at for r in rows],
        [r.amount for r in rows],
        [r.of.window_days for r in rows],
        [r.of.exposed_at for r in rows],
        [orjson.dumps(r.details).decode() for r in rows],
        ATTRIBUTION_SOURCE,
    )
