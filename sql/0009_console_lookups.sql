-- Where an event is, found without scanning a topic (docs/contract.md §9): every bookkeeping
-- row keeps the position its record was read at and its partition key (the user key), and
-- the lookups by event id, by user key and by time go through an index.

-- The inbox already keeps topic/partition/offset; the partition key finds a user's events.
ALTER TABLE ingest_inbox ADD COLUMN partition_key text NULL;

-- Parked and skipped events keep the position of the record they were read from (NULL for
-- rows written before this migration and for follow-up work the handlers park).
ALTER TABLE ingest_pending
    ADD COLUMN topic text NULL,
    ADD COLUMN partition integer NULL,
    ADD COLUMN "offset" bigint NULL;

ALTER TABLE ingest_skipped
    ADD COLUMN topic text NULL,
    ADD COLUMN partition integer NULL,
    ADD COLUMN "offset" bigint NULL;

-- The dead-letter log already keeps the position; the partition key finds a user's.
ALTER TABLE ingest_dead_letters ADD COLUMN partition_key text NULL;

-- Lookups by user key (partition_key = ANY(the user's keys)). An event id alone is found
-- through the primary keys, (source, event_id) with source = ANY(the sources), except in
-- the dead-letter log, whose key is an identity.
CREATE INDEX ingest_inbox_partition_key_idx ON ingest_inbox (partition_key)
    WHERE partition_key IS NOT NULL;
CREATE INDEX ingest_pending_partition_key_idx ON ingest_pending (partition_key);
CREATE INDEX ingest_skipped_partition_key_idx ON ingest_skipped (partition_key)
    WHERE partition_key IS NOT NULL;
CREATE INDEX ingest_dead_letters_partition_key_idx ON ingest_dead_letters (partition_key)
    WHERE partition_key IS NOT NULL;
CREATE INDEX ingest_dead_letters_event_id_idx ON ingest_dead_letters (event_id)
    WHERE event_id IS NOT NULL;

-- The console's Parked page counts by reason and source (oldest, newest) and pages one of
-- them; `pending list` counts by reason: one index serves all of them.
DROP INDEX ingest_pending_reason_parked_at_idx;
CREATE INDEX ingest_pending_reason_source_idx ON ingest_pending (reason, source, parked_at);

-- The console's apply rate (events applied per minute, the last minutes) and `inbox prune`
-- read the inbox by age.
CREATE INDEX ingest_inbox_processed_at_idx ON ingest_inbox (processed_at);

-- `ingester replay`: how far each partition of a replay has been applied, written in the
-- transaction of each chunk, so a stopped replay resumes where it stopped (even with
-- --reapply, which does not consult the inbox). `replay` names the source and the window.
CREATE TABLE ingest_replay_progress (
    replay text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replay, topic, partition)
);
