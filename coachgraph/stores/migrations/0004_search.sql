-- The search projection (Postgres backend): one document per coach, athlete, program and skill,
-- rewritten by the projector from the records. Text is folded (lower case, no accents) once,
-- when a document is written; queries fold their words the same way.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;

-- unaccent() is STABLE (its dictionary could change); naming the dictionary makes it safe to
-- index, and the wrapper lets the planner call it once per value
CREATE FUNCTION cg_fold(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;

CREATE TABLE search_documents (
    kind text NOT NULL CHECK (kind IN ('COACH', 'ATHLETE', 'PROGRAM', 'SKILL')),
    id bigint NOT NULL,
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    sports text[] NOT NULL DEFAULT '{}',
    city text,
    level smallint,
    skill_ids bigint[] NOT NULL DEFAULT '{}',
    looking_for_coach boolean NOT NULL DEFAULT false,
    coach_ids bigint[] NOT NULL DEFAULT '{}',  -- an athlete's coaches: who may find it
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', cg_fold(title)), 'A')
        || setweight(to_tsvector('simple', cg_fold(body)), 'B')) STORED,
    PRIMARY KEY (kind, id)
);
CREATE INDEX search_documents_tsv_idx ON search_documents USING gin (tsv);
CREATE INDEX search_documents_sports_idx ON search_documents USING gin (sports);

-- every folded word of every document: query words that match none are corrected against it
CREATE TABLE search_words (word text PRIMARY KEY);
CREATE INDEX search_words_prefix_idx ON search_words (word text_pattern_ops);
