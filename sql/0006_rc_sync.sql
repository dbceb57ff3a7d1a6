-- rc-sync's own state, one row per RevenueCat customer it has called for (docs/rc-sync.md).
--
-- A call to RevenueCat cannot share a transaction with the database, so its intent is
-- committed first: `intent` holds exactly what is about to be sent ({"$email": {"value": ...,
-- "updated_at_ms": ...}, ...}) and is cleared, in the transaction that records the answer
-- into user_revenue_cat_ids.revenue_cat_attributes, once RevenueCat answered. A process killed
-- in between leaves the intent behind, and the next one re-sends it unchanged: RevenueCat keeps
-- the value with the latest updated_at_ms, so the same (value, updated_at_ms) twice is one
-- change.
CREATE TABLE ingest_rc_sync (
    revenue_cat_id text PRIMARY KEY
        REFERENCES user_revenue_cat_ids (revenue_cat_id) ON DELETE CASCADE,
    intent jsonb NULL,
    intent_at timestamptz NULL,
    -- Values RevenueCat refused with a 4xx ({"$email": "not-an-email"}): never sent again,
    -- until our value changes.
    refused jsonb NOT NULL DEFAULT '{}'::jsonb,
    synced_at timestamptz NULL,
    CHECK ((intent IS NULL) = (intent_at IS NULL))
);

-- Leftover intents, re-sent first after a restart.
CREATE INDEX ingest_rc_sync_intent_idx ON ingest_rc_sync (intent_at) WHERE intent IS NOT NULL;
