-- The learned collaborative signal (issue 17): a vector per athlete, coach and program, built
-- from behaviour (who chose whom, enrollments kept or dropped, completed sessions, recency) by
-- coachgraph.graph.collab and read by the ranking whichever graph backend runs. pgvector holds
-- them (the vector type, arithmetic for in-place updates); no typmod, so a rebuild may change
-- the dimension.
CREATE EXTENSION IF NOT EXISTS vector;

-- athletes: their normalised behaviour vector, and the norm of the raw features (to take a
-- target's own feature out of what the athlete adds to it); coaches and programs: the sums of
-- their athletes' contributions
CREATE TABLE collab_vectors (
    kind text NOT NULL CHECK (kind IN ('athlete', 'coach', 'program')),
    id bigint NOT NULL,
    vec vector NOT NULL,
    norm real NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, id)
);

-- what each athlete added to each coach and program vector, so that a change of the athlete
-- moves those by the difference instead of recomputing them
CREATE TABLE collab_links (
    athlete_id bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('coach', 'program')),
    target_id bigint NOT NULL,
    weight real NOT NULL,   -- of the contribution (recency, sessions, kept or dropped)
    feature real NOT NULL,  -- of the target in the athlete's own features
    PRIMARY KEY (athlete_id, kind, target_id)
);

-- a full rebuild in progress: athletes done up to after_id; a restart resumes there, and the
-- events from the outbox position it started at are applied again at its end
CREATE TABLE collab_rebuild (
    name text PRIMARY KEY,
    after_id bigint NOT NULL,
    dims integer NOT NULL,
    last_txid xid8 NOT NULL,
    last_id bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
