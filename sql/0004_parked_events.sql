-- Parked events at any count (docs/consumers.md, "Pending"): each parked row names the keys it
-- waits for, inserts of those keys leave a wake-up, and a retry pass reads the rows that were
-- woken or whose backoff is over, never the whole table.

-- waits_for: 'kind:value' keys (e.g. 'revenuecat_id:abc', 'profile_email:ann@example.com');
-- next_attempt_at: when a retry pass may pick the row up without a wake-up (capped
-- exponential backoff per row).
ALTER TABLE ingest_pending
    ADD COLUMN waits_for text[] NOT NULL DEFAULT '{}',
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();

-- fastupdate off: the wake-up triggers look keys up on every insert into a target table, and
-- a GIN pending list would make each lookup scan it (up to gin_pending_list_limit).
CREATE INDEX ingest_pending_waits_for_idx ON ingest_pending USING gin (waits_for)
    WITH (fastupdate = off);
-- `pending list` and the gauges count by reason with the oldest of each: an index-only scan.
DROP INDEX ingest_pending_reason_idx;
CREATE INDEX ingest_pending_reason_parked_at_idx ON ingest_pending (reason, parked_at);

CREATE INDEX ingest_pending_next_attempt_idx ON ingest_pending (next_attempt_at, source, event_id);

-- Keys inserted into a target table that some parked row waits for. Insert-only, so the
-- writers of the target tables never lock a parked row; the retry pass consumes them.
CREATE TABLE ingest_pending_wakes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    woken_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ingest_pending_wake(keys text[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO ingest_pending_wakes (key)
    SELECT k FROM unnest(keys) AS k
    WHERE k IS NOT NULL
      AND EXISTS (SELECT 1 FROM ingest_pending p WHERE p.waits_for @> ARRAY[k]);
$$;

CREATE FUNCTION ingest_pending_wake_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'user_revenue_cat_ids' THEN
        PERFORM ingest_pending_wake(ARRAY['revenuecat_id:' || NEW.revenue_cat_id]);
    WHEN 'users' THEN
        PERFORM ingest_pending_wake(
            ARRAY['user_uid:' || NEW.uid, 'user_email:' || lower(NEW.email)]);
    WHEN 'user_profiles' THEN
        PERFORM ingest_pending_wake(
            ARRAY['profile_id:' || NEW.id::text, 'profile_email:' || lower(NEW.email)]);
    WHEN 'user_klaviyo_profiles' THEN
        PERFORM ingest_pending_wake(ARRAY['klaviyo_id:' || NEW.klaviyo_id]);
    WHEN 'experiments' THEN
        PERFORM ingest_pending_wake(ARRAY['experiment:' || NEW.name]);
    WHEN 'variants' THEN
        PERFORM ingest_pending_wake(
            ARRAY(SELECT 'experiment:' || e.name FROM experiments e WHERE e.id = NEW.experiment_id));
    WHEN 'user_experiment_participation' THEN
        PERFORM ingest_pending_wake(ARRAY[
            'participation:' || NEW.user_id::text || '/' || NEW.experiment_id::text,
            'participant:' || NEW.user_id::text]);
    END CASE;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF revenue_cat_id
    ON user_revenue_cat_ids FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF uid, email
    ON users FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF email
    ON user_profiles FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF klaviyo_id
    ON user_klaviyo_profiles FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF name
    ON experiments FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT OR UPDATE OF name
    ON variants FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
CREATE TRIGGER ingest_pending_wake AFTER INSERT
    ON user_experiment_participation FOR EACH ROW EXECUTE FUNCTION ingest_pending_wake_row();
-- A conversion parked as earlier than the first exposure applies once an earlier impression
-- moves the exposure back.
CREATE TRIGGER ingest_pending_wake_moved AFTER UPDATE OF first_exposure_date
    ON user_experiment_participation FOR EACH ROW
    WHEN (OLD.first_exposure_date IS DISTINCT FROM NEW.first_exposure_date)
    EXECUTE FUNCTION ingest_pending_wake_row();

-- Expired parked events keep what a replay needs (`ingester pending retry --expired`).
ALTER TABLE ingest_skipped
    ADD COLUMN partition_key text NULL,
    ADD COLUMN payload jsonb NULL;

-- Retention (`ingester inbox prune`) deletes by age; `pending list` counts the replayable.
CREATE INDEX ingest_skipped_skipped_at_idx ON ingest_skipped (skipped_at);
CREATE INDEX ingest_skipped_replayable_idx ON ingest_skipped (reason) WHERE payload IS NOT NULL;

-- Seed 002 has no foreign keys on these columns: a token may name an impression that is
-- still on its way through Kafka.
ALTER TABLE email_verification_tokens
    DROP CONSTRAINT IF EXISTS email_verification_tokens_experiment_id_fkey,
    DROP CONSTRAINT IF EXISTS email_verification_tokens_variant_id_fkey,
    DROP CONSTRAINT IF EXISTS email_verification_tokens_impression_id_fkey;
