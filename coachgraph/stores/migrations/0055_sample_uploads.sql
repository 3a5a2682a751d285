-- Uploads of samples already stored (api/ingest.py NDJSON bodies, api/wearable_files.py
-- files), by the SHA-256 of their bytes, per session: written in the transaction that stores
-- the samples, so a retry of the same bytes is answered from here and stores nothing again
-- (stores/uploads.py). `first_seq` and `accepted` give the first answer's cursors back.
CREATE TABLE sample_uploads (
    session_id bigint NOT NULL REFERENCES training_sessions (id) ON DELETE CASCADE,
    digest bytea NOT NULL CHECK (length(digest) = 32),
    source text NOT NULL CHECK (source IN ('NDJSON', 'FIT', 'TCX', 'GPX')),
    first_seq bigint NOT NULL,
    accepted integer NOT NULL CHECK (accepted >= 0),
    skipped integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, digest)
);
