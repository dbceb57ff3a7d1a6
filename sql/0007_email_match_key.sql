-- One normalisation of email addresses for every match (docs/schema.md, "Matching emails").
--
-- The handlers used to lower-case in Python and compare with SQL lower(email), and the wake-up
-- triggers of 0004 used SQL lower(). SQL lower() follows the database's LC_CTYPE: under C or
-- POSIX it folds ASCII only, and even under a UTF-8 locale it maps some characters (final
-- sigma, dotted capital I) differently from Python, so an event could stay parked until it
-- expired. Now the database alone computes the key, with one function used by the handlers'
-- matches, the wake-up keys of parked events and the triggers; Python never case-maps an
-- email it compares.
--
-- The key is a Unicode case folding that does not depend on the database's ctype, taken from
-- the first of these the server offers (each checked on a non-ASCII probe):
--   1. PostgreSQL 18+: casefold() under the built-in PG_UNICODE_FAST collation (full Unicode
--      case folding: 'ß' and 'ss' match, final sigma matches sigma);
--   2. a server built with ICU: lower(upper()) under the ICU root collation;
--   3. PostgreSQL 17: lower(upper()) under the built-in PG_C_UTF8 collation (simple mappings);
--   4. lower(upper()) under the database's own collation, when its ctype folds the probe.
-- Otherwise (a C-ctype database without any of them) the last one is kept and a WARNING says
-- that only ASCII is folded.

DO $migration$
DECLARE
    candidates text[] := ARRAY[
        'casefold(email COLLATE pg_unicode_fast)',
        'lower(upper(email COLLATE "und-x-icu"))',
        'lower(upper(email COLLATE pg_c_utf8))',
        'lower(upper(email))'
    ];
    candidate text;
BEGIN
    FOREACH candidate IN ARRAY candidates LOOP
        BEGIN
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION ingest_email_key(email text) RETURNS text'
                ' LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS %L',
                'SELECT ' || candidate);
            IF ingest_email_key('ÉLODIE.ΣΟΦΙΑ@X.COM') = 'élodie.σοφια@x.com' THEN
                RETURN;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- The collation or function does not exist here (or ICU is not built in).
            NULL;
        END;
    END LOOP;
    RAISE WARNING 'ingest_email_key: this server offers no Unicode case mapping independent '
        'of the database''s ctype; emails are matched by lower(upper(email)) under the '
        'database''s collation';
END
$migration$;

COMMENT ON FUNCTION ingest_email_key(text) IS
    'The key emails are matched by (Kit and Klaviyo events, parked events'' wake-ups): a Unicode case folding independent of the database''s ctype (sql/0007_email_match_key.sql).';

CREATE INDEX users_email_key_idx ON users (ingest_email_key(email));
CREATE INDEX user_profiles_email_key_idx ON user_profiles (ingest_email_key(email));

-- The wake-up keys of 0004, with the same key the handlers park with.
CREATE OR REPLACE FUNCTION ingest_pending_wake_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'user_revenue_cat_ids' THEN
        PERFORM ingest_pending_wake(ARRAY['revenuecat_id:' || NEW.revenue_cat_id]);
    WHEN 'users' THEN
        PERFORM ingest_pending_wake(
            ARRAY['user_uid:' || NEW.uid, 'user_email:' || ingest_email_key(NEW.email)]);
    WHEN 'user_profiles' THEN
        PERFORM ingest_pending_wake(
            ARRAY['profile_id:' || NEW.id::text, 'profile_email:' || ingest_email_key(NEW.email)]);
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

-- Events parked before this migration wait for lower-cased emails: give them the new keys.
UPDATE ingest_pending AS p
SET waits_for = ARRAY(
    SELECT CASE
        WHEN starts_with(w.k, 'user_email:') THEN 'user_email:' || ingest_email_key(substr(w.k, 12))
        WHEN starts_with(w.k, 'profile_email:')
            THEN 'profile_email:' || ingest_email_key(substr(w.k, 15))
        ELSE w.k
    END
    FROM unnest(p.waits_for) WITH ORDINALITY AS w(k, n)
    ORDER BY w.n)
WHERE EXISTS (
    SELECT 1 FROM unnest(p.waits_for) AS w(k)
    WHERE starts_with(w.k, 'user_email:') OR starts_with(w.k, 'profile_email:'));
