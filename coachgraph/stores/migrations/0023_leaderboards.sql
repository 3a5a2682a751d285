-- Leaderboards (stores/standings.py): a program's completed sessions ending in a period.
CREATE INDEX training_sessions_program_ended_idx
    ON training_sessions (program_id, ended_at) WHERE status = 'COMPLETED';
