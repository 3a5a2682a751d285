-- Live sessions: each sample's cursor is its per-session sequence number. A batch reserves its
-- range by bumping sample_seq on the session row, which also orders concurrent batches of one
-- session: the row lock is held to commit, so cursors become visible in order, without gaps.
ALTER TABLE training_sessions ADD COLUMN sample_seq bigint NOT NULL DEFAULT 0;
