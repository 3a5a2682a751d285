-- What the workers of `serve --workers N` share without Redis: rate-limit windows and the
-- automatic persisted queries. Both are caches of short-lived counts and documents, not
-- records: UNLOGGED (no WAL; emptied by a crash, which only resets the counts and makes
-- clients send a document again).
CREATE UNLOGGED TABLE IF NOT EXISTS rate_windows (
    key text NOT NULL,
    win bigint NOT NULL,  -- the window's number: floor(epoch seconds / its length)
    count integer NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, win)
);
CREATE INDEX IF NOT EXISTS rate_windows_expiry ON rate_windows (expires_at);

CREATE UNLOGGED TABLE IF NOT EXISTS persisted_queries (
    digest text PRIMARY KEY,  -- SHA-256 of the document, hex
    document text NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS persisted_queries_used ON persisted_queries (used_at);
