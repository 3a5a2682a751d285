"""What is stored about one athlete, read for its data export: small records at once, samples
and rollups through a server-side cursor (inside a transaction), never all in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from coachgraph.stores.sql import Executor

# each query: the athlete's id as $1; one JSON object per row, built by Postgres
RECORDS: dict[str, str] = {
    "athlete": "SELECT to_jsonb(a) AS doc FROM athletes a WHERE a.id = $1",
    "skills": "SELECT jsonb_build_object('skill', s.slug, 'name', s.name, 'level', x.level) AS doc "
    "FROM athlete_skills x JOIN skills s ON s.id = x.skill_id WHERE x.athlete_id = $1 "
    "ORDER BY s.id",
    "goals": "SELECT jsonb_build_object('skill', s.slug, 'name', s.name) AS doc "
    "FROM athlete_goals x JOIN skills s ON s.id = x.skill_id WHERE x.athlete_id = $1 "
    "ORDER BY s.id",
    "coaches": "SELECT jsonb_build_object('coach', c.name, 'assignedAt', x.assigned_at) AS doc "
    "FROM coach_athletes x JOIN coaches c ON c.id = x.coach_id WHERE x.athlete_id = $1 "
    "ORDER BY c.id",
    "enrollments": "SELECT jsonb_build_object('program', p.title, 'status', x.status, "
    "'enrolledAt', x.enrolled_at) AS doc FROM enrollments x "
    "JOIN programs p ON p.id = x.program_id WHERE x.athlete_id = $1 ORDER BY p.id",
    "sessions": "SELECT jsonb_build_object('id', s.id, 'coach', c.name, 'status', s.status, "
    "'scheduledAt', s.scheduled_at, 'startedAt', s.started_at, 'endedAt', s.ended_at, "
    "'notes', s.notes, 'compacted', s.compacted_at IS NOT NULL) AS doc "
    "FROM training_sessions s JOIN coaches c ON c.id = s.coach_id WHERE s.athlete_id = $1 "
    "ORDER BY s.id",
    # answers to questionnaires after sessions, with the questions as they were answered
    "feedback": "SELECT jsonb_build_object('session', f.session_id, 'questionnaire', v.title, "
    "'version', f.version, 'questions', v.questions, 'answers', f.answers, "
    "'submittedAt', f.submitted_at) AS doc FROM session_feedback f "
    "JOIN questionnaire_versions v ON v.questionnaire_id = f.questionnaire_id "
    "AND v.version = f.version "
    "WHERE f.athlete_id = $1 ORDER BY f.submitted_at, f.session_id",
}

SAMPLES = (
    "SELECT m.session_id, m.seq, m.kind::text AS kind, m.at, m.value FROM metric_samples m "
    "JOIN training_sessions s ON s.id = m.session_id WHERE s.athlete_id = $1 "
    "ORDER BY m.session_id, m.seq"
)
ROLLUPS = (
    "SELECT r.session_id, r.kind::text AS kind, r.bucket, r.count, r.min, r.max, r.avg "
    "FROM metric_rollups r JOIN training_sessions s ON s.id = r.session_id "
    "WHERE s.athlete_id = $1 ORDER BY r.session_id, r.kind, r.bucket"
)


async def records(conn: Executor, *, section: str, athlete_id: int) -> list[Any]:
    """One section's objects (decoded JSON)."""
    rows = await conn.fetch(RECORDS[section], athlete_id)
    return [r["doc"] for r in rows]


async def media(conn: Executor, *, athlete_id: int) -> list[dict[str, Any]]:
    """Media rows of the athlete and of its sessions, READY ones only (bytes exist)."""
    rows = await conn.fetch(
        "SELECT m.id, m.owner_type, m.owner_id, m.kind::text AS kind, m.content_type, "
        "m.size_bytes, m.storage_key, m.created_at FROM media m "
        "WHERE m.status = 'READY' AND ((m.owner_type = 'Athlete' AND m.owner_id = $1) OR "
        "(m.owner_type = 'TrainingSession' AND m.owner_id IN "
        "(SELECT id FROM training_sessions WHERE athlete_id = $1))) ORDER BY m.id",
        athlete_id,
    )
    return [dict(r) for r in rows]


async def stream(conn: Any, query: str, *, athlete_id: int, prefetch: int) -> AsyncIterator[Any]:
    """Rows of `query` through a cursor (`conn` inside a transaction), `prefetch` at a time."""
    async for row in conn.cursor(query, athlete_id, prefetch=prefetch):
        yield row


async def exists(conn: Executor, *, athlete_id: int) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM athletes WHERE id = $1)", athlete_id
    )
    return found
