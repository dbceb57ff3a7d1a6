-- Notification setting stats without a global lock.
--
-- 0001 serialised every change to the counts behind one transaction-scoped advisory lock,
-- held until the writer committed: every profile and settings write of every consumer
-- partition, replica and of the web app ran one at a time. Here the two jobs that lock did
-- are split:
--
-- * Per-user consistency (the ledger must see the other transaction's profile or setting
--   of the same user): the reconciliation locks the `users` rows of the users a statement
--   touched, in id order, and only those. Writers of different users never wait for each
--   other; writers of the same user still run one after another, which is what prevents a
--   profile insert and a settings insert of one user from each missing the other.
-- * The six shared counter rows: a statement no longer updates them. It appends its net
--   change to user_notification_setting_stats_deltas, and a deferred constraint trigger
--   folds the transaction's changes into user_notification_setting_stats right before it
--   commits, taking the rows in (channel, enabled) order. A counter row is locked only for
--   the commit itself, so two transactions moving the same count overlap in everything
--   but their commit.
--
-- The counts stay exact and transactional: a committed transaction's changes are in the
-- table, a rolled-back one's never are. Inside a writing transaction the table shows the
-- committed counts and none of its own changes until it commits.

CREATE FUNCTION user_notification_setting_stats_require_isolation() RETURNS void
    LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- Under REPEATABLE READ the snapshot predates the per-user lock, so a change committed
    -- by the previous holder could be missed silently; refuse instead of miscounting.
    -- (READ COMMITTED reads after the lock; SERIALIZABLE detects the conflict.)
    IF current_setting('transaction_isolation') = 'repeatable read' THEN
        RAISE EXCEPTION 'user_notification_setting_stats is maintained only under READ COMMITTED or SERIALIZABLE'
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$$;

-- Lock the users rows in id order (deadlock-free within one statement). NO KEY UPDATE does
-- not conflict with the KEY SHARE locks foreign-key checks take, so inserting a profile or
-- a setting for the user is never blocked by it; only another reconciliation of the same
-- user (or an update of that user's row) waits. Rows this transaction deleted (a user
-- delete cascading here) are already locked by the delete and are simply not returned.
CREATE FUNCTION user_notification_setting_stats_lock_users(p_user_ids integer[]) RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM user_notification_setting_stats_require_isolation();
    PERFORM 1
    FROM users AS u
    WHERE u.id = ANY (p_user_ids)
    ORDER BY u.id
    FOR NO KEY UPDATE OF u;
END
$$;

-- Changes to the counts that the current transaction has made and not yet folded, one row
-- per statement and (channel, enabled). Every committed transaction deletes its own rows
-- before commit, so the committed contents are always empty: UNLOGGED costs no WAL and
-- losing it in a crash loses nothing. Rows are only ever inserted and deleted by the
-- transaction that owns them, so writers never wait on each other here.
CREATE UNLOGGED TABLE user_notification_setting_stats_deltas (
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel text NOT NULL,
    enabled boolean NOT NULL,
    delta integer NOT NULL
);

CREATE INDEX user_notification_setting_stats_deltas_tx_idx
    ON user_notification_setting_stats_deltas (tx);

-- Fold the transaction's deltas into the counts. The first deferred event of a transaction
-- takes all of its rows; the others find none. Counter rows are taken in a fixed order, so
-- two committing transactions never deadlock on them.
CREATE FUNCTION user_notification_setting_stats_fold() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    d record;
BEGIN
    FOR d IN
        WITH taken AS (
            DELETE FROM user_notification_setting_stats_deltas
            WHERE tx = pg_current_xact_id()
            RETURNING channel, enabled, delta
        )
        SELECT t.channel, t.enabled, sum(t.delta)::integer AS delta
        FROM taken AS t
        GROUP BY t.channel, t.enabled
        HAVING sum(t.delta) <> 0
        ORDER BY t.channel, t.enabled
    LOOP
        PERFORM user_notification_setting_stats_apply(d.channel, d.enabled, d.delta);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER user_notification_setting_stats_deltas_fold
    AFTER INSERT ON user_notification_setting_stats_deltas
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION user_notification_setting_stats_fold();

-- Same reconciliation as 0001 (the ledger against the current rows, for the touched users
-- only), with the per-user lock instead of the global one and the difference queued as
-- deltas instead of applied to the counter rows.
CREATE OR REPLACE FUNCTION user_notification_setting_stats_reconcile(p_user_ids integer[])
    RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_user_ids IS NULL OR cardinality(p_user_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM user_notification_setting_stats_lock_users(p_user_ids);
    -- A new statement, hence (READ COMMITTED) a new snapshot taken after the lock: it sees
    -- what the previous holder of these users committed, rows and ledger alike.
    WITH wanted AS (
        SELECT s.user_id, s.channel, s.enabled
        FROM user_notification_settings AS s
        JOIN user_klaviyo_profiles AS p ON p.user_id = s.user_id
        WHERE s.user_id = ANY (p_user_ids)
    ),
    counted AS (
        SELECT m.user_id, m.channel, m.enabled
        FROM user_notification_setting_stats_members AS m
        WHERE m.user_id = ANY (p_user_ids)
    ),
    removed AS (
        DELETE FROM user_notification_setting_stats_members AS m
        USING (SELECT * FROM counted EXCEPT SELECT * FROM wanted) AS x
        WHERE m.user_id = x.user_id AND m.channel = x.channel AND m.enabled = x.enabled
        RETURNING m.channel, m.enabled, -1 AS delta
    ),
    added AS (
        INSERT INTO user_notification_setting_stats_members (user_id, channel, enabled)
        SELECT * FROM wanted EXCEPT SELECT * FROM counted
        RETURNING channel, enabled, 1 AS delta
    )
    INSERT INTO user_notification_setting_stats_deltas (channel, enabled, delta)
    SELECT c.channel, c.enabled, sum(c.delta)::integer
    FROM (SELECT * FROM removed UNION ALL SELECT * FROM added) AS c
    GROUP BY c.channel, c.enabled
    HAVING sum(c.delta) <> 0;
END
$$;

-- Recount everything from the rows (after a TRUNCATE, or by hand after repairs). The table
-- locks wait for every transaction writing profiles or settings to finish (their deltas
-- are folded by then) and keep new ones out until this one commits; SHARE ROW EXCLUSIVE
-- conflicts with itself, so two rebuilds run one after the other.
CREATE OR REPLACE FUNCTION user_notification_setting_stats_rebuild() RETURNS void
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM user_notification_setting_stats_require_isolation();
    LOCK TABLE user_klaviyo_profiles, user_notification_settings IN SHARE ROW EXCLUSIVE MODE;
    -- Only this transaction's own unfolded deltas can be here; the recount supersedes them.
    DELETE FROM user_notification_setting_stats_deltas;
    DELETE FROM user_notification_setting_stats_members;
    INSERT INTO user_notification_setting_stats_members (user_id, channel, enabled)
    SELECT s.user_id, s.channel, s.enabled
    FROM user_notification_settings AS s
    JOIN user_klaviyo_profiles AS p ON p.user_id = s.user_id;
    UPDATE user_notification_setting_stats AS st
    SET users = (
        SELECT count(*)
        FROM user_notification_setting_stats_members AS m
        WHERE m.channel = st.channel AND m.enabled = st.enabled
    );
    INSERT INTO user_notification_setting_stats (channel, enabled, users)
    SELECT m.channel, m.enabled, count(*)
    FROM user_notification_setting_stats_members AS m
    GROUP BY m.channel, m.enabled
    ON CONFLICT (channel, enabled) DO NOTHING;
END
$$;

DROP FUNCTION user_notification_setting_stats_lock();
