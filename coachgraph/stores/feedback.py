"""Questionnaires (versioned) and the feedback athletes give on sessions, as JSONB."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores.records import SessionScope
from coachgraph.stores.sql import Executor, returned, session_scope_args, session_scope_sql


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    label: str
    kind: str  # SCALE, NUMBER, TEXT, CHOICE
    min: int | None = None
    max: int | None = None
    choices: list[str] | None = None
    required: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "min": self.min,
            "max": self.max,
            "choices": self.choices,
            "required": self.required,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Question:
        return cls(
            data["key"],
            data["label"],
            data["kind"],
            data.get("min"),
            data.get("max"),
            data.get("choices"),
            data.get("required", True),
        )


@dataclass(frozen=True, slots=True)
class QuestionnaireRecord:
    """A questionnaire as it is at `version` (the latest: `current_version`)."""

    id: int
    version: int
    current_version: int
    coach_id: int
    title: str
    questions: list[Question]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    session_id: int
    questionnaire_id: int
    version: int
    athlete_id: int
    answers: dict[str, Any]
    submitted_at: datetime


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to one question, in a session's feedback."""

    session_id: int
    version: int
    value: Any
    submitted_at: datetime


_VERSION_COLUMNS = (
    "q.id, v.version, q.current_version, q.coach_id, v.title, v.questions, q.created_at"
)
_FEEDBACK_COLUMNS = "session_id, questionnaire_id, version, athlete_id, answers, submitted_at"


def _questionnaire(row: asyncpg.Record) -> QuestionnaireRecord:
    questions = [Question.from_json(q) for q in row["questions"]]
    return QuestionnaireRecord(
        row["id"],
        row["version"],
        row["current_version"],
        row["coach_id"],
        row["title"],
        questions,
        row["created_at"],
    )


def _feedback(row: asyncpg.Record) -> FeedbackRecord:
    return FeedbackRecord(*(row[c] for c in _FEEDBACK_COLUMNS.split(", ")))


async def create(
    conn: Executor, *, coach_id: int, title: str, questions: list[Question]
) -> QuestionnaireRecord:
    """A new questionnaire at version 1 (call inside a transaction)."""
    try:
        made = returned(
            await conn.fetchrow(
                "INSERT INTO questionnaires (coach_id) VALUES ($1) RETURNING id", coach_id
            )
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("Coach", coach_id) from None
    return await _add_version(conn, made["id"], 1, title, questions)


async def revise(
    conn: Executor, *, questionnaire_id: int, title: str, questions: list[Question]
) -> QuestionnaireRecord:
    """A new version (call inside a transaction); earlier versions and their answers stay."""
    version = await conn.fetchval(
        "UPDATE questionnaires SET current_version = current_version + 1 WHERE id = $1 "
        "RETURNING current_version",
        questionnaire_id,
    )
    if version is None:
        raise NotFound("Questionnaire", questionnaire_id)
    return await _add_version(conn, questionnaire_id, version, title, questions)


async def _add_version(
    conn: Executor, questionnaire_id: int, version: int, title: str, questions: list[Question]
) -> QuestionnaireRecord:
    await conn.execute(
        "INSERT INTO questionnaire_versions (questionnaire_id, version, title, questions) "
        "VALUES ($1, $2, $3, $4::jsonb)",
        questionnaire_id,
        version,
        title,
        [q.as_json() for q in questions],
    )
    found = await versions(conn, keys=[(questionnaire_id, version)])
    return found[(questionnaire_id, version)]


async def latest(conn: Executor, *, ids: list[int]) -> dict[int, QuestionnaireRecord]:
    """Questionnaires by id, each at its current version; missing ids are absent."""
    rows = await conn.fetch(
        f"""SELECT {_VERSION_COLUMNS} FROM questionnaires q
            JOIN questionnaire_versions v
              ON v.questionnaire_id = q.id AND v.version = q.current_version
            WHERE q.id = ANY($1::bigint[])""",
        ids,
    )
    return {r["id"]: _questionnaire(r) for r in rows}


async def for_coaches(
    conn: Executor, *, coach_ids: list[int]
) -> dict[int, list[QuestionnaireRecord]]:
    """Each coach's questionnaires at their current versions, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_VERSION_COLUMNS} FROM questionnaires q
            JOIN questionnaire_versions v
              ON v.questionnaire_id = q.id AND v.version = q.current_version
            WHERE q.coach_id = ANY($1::bigint[]) ORDER BY q.coach_id, q.id""",
        coach_ids,
    )
    found: dict[int, list[QuestionnaireRecord]] = {}
    for r in rows:
        found.setdefault(r["coach_id"], []).append(_questionnaire(r))
    return found


async def versions(
    conn: Executor, *, keys: list[tuple[int, int]]
) -> dict[tuple[int, int], QuestionnaireRecord]:
    """Questionnaires as they were at given versions, by (id, version)."""
    rows = await conn.fetch(
        f"""SELECT {_VERSION_COLUMNS}
            FROM unnest($1::bigint[], $2::int[]) AS k(id, version)
            JOIN questionnaires q ON q.id = k.id
            JOIN questionnaire_versions v ON v.questionnaire_id = k.id AND v.version = k.version""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r["id"], r["version"]): _questionnaire(r) for r in rows}


async def submit(
    conn: Executor,
    *,
    session_id: int,
    questionnaire_id: int,
    version: int,
    athlete_id: int,
    answers: dict[str, Any],
) -> FeedbackRecord:
    """Store validated answers; a second submission for the same session is a Conflict."""
    row = await conn.fetchrow(
        f"""INSERT INTO session_feedback
                (session_id, questionnaire_id, version, athlete_id, answers)
            VALUES ($1, $2, $3, $4, $5::jsonb)
            ON CONFLICT (session_id, questionnaire_id) DO NOTHING
            RETURNING {_FEEDBACK_COLUMNS}""",
        session_id,
        questionnaire_id,
        version,
        athlete_id,
        answers,
    )
    if row is None:
        raise Conflict("Feedback to this questionnaire was already given for this session")
    return _feedback(row)


async def for_sessions(
    conn: Executor, *, session_ids: list[int]
) -> dict[int, list[FeedbackRecord]]:
    """Each session's feedback, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_FEEDBACK_COLUMNS} FROM session_feedback
            WHERE session_id = ANY($1::bigint[]) ORDER BY session_id, submitted_at, questionnaire_id""",
        session_ids,
    )
    found: dict[int, list[FeedbackRecord]] = {}
    for r in rows:
        found.setdefault(r["session_id"], []).append(_feedback(r))
    return found


async def answers_over_time(
    conn: Executor,
    *,
    athlete_id: int,
    questionnaire_id: int,
    key: str,
    scope: SessionScope,
    last: int,
) -> list[Answer]:
    """The athlete's latest `last` answers to question `key` in sessions `scope` may see,
    oldest first."""
    rows = await conn.fetch(
        f"""SELECT * FROM (
                SELECT f.session_id, f.version, f.answers -> $3::text AS value, f.submitted_at
                FROM session_feedback f
                JOIN training_sessions s ON s.id = f.session_id
                WHERE f.athlete_id = $1 AND f.questionnaire_id = $2 AND f.answers ? $3::text
                  AND {session_scope_sql(5)}
                ORDER BY f.submitted_at DESC, f.session_id DESC LIMIT $4) a
            ORDER BY a.submitted_at, a.session_id""",
        athlete_id,
        questionnaire_id,
        key,
        last,
        *session_scope_args(scope),
    )
    return [Answer(r["session_id"], r["version"], r["value"], r["submitted_at"]) for r in rows]
