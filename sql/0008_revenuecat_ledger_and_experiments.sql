-- RevenueCat money and experiments in the experiment tables (docs/experiments.md).
--
-- * The ledger keeps every purchase, refund and refund reversal that counts as revenue, so
--   that the final conversions do not depend on which topic is applied first: a purchase
--   converts in the participations exposed before it that exist when it applies, and every
--   participation created (or whose first exposure moves earlier) later converts the
--   purchases of the ledger made since.
-- * A RevenueCat experiment is registered as `revenuecat:<experiment_id>` on first sight,
--   unless an operator mapped it onto an existing experiment here.
-- * Purchases, refunds and enrolments that touch one person's participations take one
--   advisory lock per person (by email) first, in every transaction, so a participation and
--   a purchase committed at the same moment always see each other.

CREATE TABLE ingest_revenuecat_ledger (
    event_id text PRIMARY KEY,  -- the RevenueCat event id
    kind text NOT NULL CHECK (kind IN ('purchase', 'refund', 'refund_reversed')),
    revenue_cat_ids text[] NOT NULL,  -- app_user_id, original_app_user_id and aliases
    occurred_at timestamptz NOT NULL,  -- the event time
    -- USD: a purchase's price, a refund's refunded amount (RevenueCat sends it negative).
    amount numeric(10, 2) NOT NULL CHECK (amount >= 0),
    -- A purchase's own transaction; the refunded one for refunds and reversals.
    transaction_id text NULL,
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- A new participation looks up its person's purchases by revenue cat id; a refund looks up
-- the purchases and the other refunds of its transaction.
CREATE INDEX ingest_revenuecat_ledger_ids_idx ON ingest_revenuecat_ledger
    USING gin (revenue_cat_ids) WITH (fastupdate = off);
CREATE INDEX ingest_revenuecat_ledger_transaction_idx ON ingest_revenuecat_ledger
    (transaction_id) WHERE transaction_id IS NOT NULL;

-- Purchase and refund conversions name their RevenueCat event in `details`; refunds find the
-- conversions of their purchase, and the rows to delete when reversed, through it.
CREATE INDEX conversions_revenuecat_event_idx ON conversions
    ((details ->> 'revenuecat_event_id')) WHERE details ? 'revenuecat_event_id';

-- An operator maps a RevenueCat experiment onto an existing experiment (instead of the
-- `revenuecat:<id>` one created on first sight); `variant_names` maps RevenueCat's variant
-- names to the experiment's (a name not listed is used as it is).
CREATE TABLE ingest_revenuecat_experiment_map (
    revenuecat_experiment_id text PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant_names jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(variant_names) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ingest_revenuecat_experiment_map_experiment_idx
    ON ingest_revenuecat_experiment_map (experiment_id);

-- One transaction-scoped advisory lock per person, named by its email match key
-- (ingest_email_key, sql/0007), taken in
-- ascending key order (two transactions locking the same people cannot deadlock). Both the
-- experiments and the RevenueCat consumers call it before they read participations or the
-- ledger.
CREATE FUNCTION ingest_lock_buyers(emails text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(pg_advisory_xact_lock(k))
    FROM (
        SELECT DISTINCT hashtextextended('ingest-buyer:' || ingest_email_key(e), 0) AS k
        FROM unnest(emails) AS e
        WHERE e IS NOT NULL
        ORDER BY 1
    ) AS keys;
END;
$$;
