-- Metric storage that lasts: samples partitioned by day (the app creates partitions ahead and
-- drops old ones, never a DELETE over millions of rows), and 1-minute rollups kept longer.
--
-- The existing table becomes the DEFAULT partition as it is (no rewrite): rows land in their
-- day's partition when the app creates it (lifecycle.ensure_partitions moves them), and rows
-- older than the raw retention are rolled up and removed from it by the retention job.
ALTER TABLE metric_samples RENAME TO metric_samples_default;
ALTER TABLE metric_samples_default DROP CONSTRAINT metric_samples_pkey;
DROP INDEX metric_samples_at_brin;

-- The partition key must be in the primary key; a session's cursors stay unique because a batch
-- reserves them on the session row (metrics.append).
CREATE TABLE metric_samples (
    session_id bigint NOT NULL REFERENCES training_sessions (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    kind metric_kind NOT NULL,
    at timestamptz NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (session_id, seq, at)
) PARTITION BY RANGE (at);
ALTER TABLE metric_samples ATTACH PARTITION metric_samples_default DEFAULT;
CREATE INDEX metric_samples_at_brin ON metric_samples USING brin (at);

-- 1-minute buckets per session and kind, aligned to the session's start as `series` aligns
-- its buckets, so any multiple of 60 seconds is answered exactly from them. Merged, never
-- recomputed: a session's samples up to training_sessions.rolled_seq are in here.
CREATE TABLE metric_rollups (
    session_id bigint NOT NULL REFERENCES training_sessions (id) ON DELETE CASCADE,
    kind metric_kind NOT NULL,
    bucket timestamptz NOT NULL,
    count integer NOT NULL CHECK (count > 0),
    min double precision NOT NULL,
    max double precision NOT NULL,
    sum double precision NOT NULL,
    avg double precision NOT NULL,
    PRIMARY KEY (session_id, kind, bucket)
) PARTITION BY RANGE (bucket);
CREATE TABLE metric_rollups_default PARTITION OF metric_rollups DEFAULT;

-- rolled_seq: the last cursor merged into metric_rollups; compacted_at: when raw samples of the
-- session were first dropped (from then on its series and summary come from the rollups)
ALTER TABLE training_sessions
    ADD COLUMN rolled_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN compacted_at timestamptz;
