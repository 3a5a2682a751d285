-- Who read or changed an athlete's data beyond the athlete itself. Append-only (rows are
-- neither updated nor deleted, erasure included); `subject` is an opaque id (a keyed hash of
-- the athlete's id), so the rows outlive the athlete without naming it; no health values.
CREATE TABLE audit_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
