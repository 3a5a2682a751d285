-- Compliance (Athlete.compliance): an athlete's sessions scheduled in a window of days, read
-- for a whole roster at once; this index serves each athlete's window without a scan.
CREATE INDEX training_sessions_athlete_scheduled_idx
    ON training_sessions (athlete_id, scheduled_at) WHERE status <> 'CANCELLED';
