-- Erasure: what is left to remove outside Postgres once an athlete's rows are gone (media
-- bytes, broker entries), kept until every store is done, so a crash mid-way is finished on
-- restart. Graph and search follow from the outbox event written in the same transaction.
-- `subject` is the opaque id audit rows know the athlete by; `athlete_id` names nobody any
-- more and keeps the athlete's tokens refused.
CREATE TABLE erasures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    athlete_id bigint NOT NULL UNIQUE,
    subject text NOT NULL,
    topics text[] NOT NULL,
    media_keys text[] NOT NULL,
    stores text[] NOT NULL DEFAULT '{}',
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX erasures_pending_idx ON erasures (id) WHERE finished_at IS NULL;
