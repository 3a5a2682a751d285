"""Coaching depth: compliance, questionnaires and feedback, leaderboards (API.md, added
2026-11-30). Policy first (resolvers/policy.py), then loaders or stores."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from coachgraph.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from coachgraph.resolvers import answers, queries, validate
from coachgraph.resolvers.answers import QuestionInput
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import (
    can_edit_questionnaires,
    can_give_feedback,
    can_read_questionnaire,
    can_read_session,
    can_see_leaderboard,
    missing,
    require,
    sessions_visible_to,
)
from coachgraph.stores import feedback, standings
from coachgraph.stores.compliance import Compliance
from coachgraph.stores.feedback import Answer, FeedbackRecord, QuestionnaireRecord
from coachgraph.stores.records import AthleteRecord, SessionRecord

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- compliance
async def compliance(ctx: Context, athlete: AthleteRecord, days: int) -> Compliance:
    """For who may read the athlete in full; a roster's athletes load in one statement."""
    validate.in_range(days, field="days", low=1, high=ctx.settings.limits.max_compliance_days)
    await queries.require_full_access(ctx, athlete)
    found = await ctx.loaders.compliance_by_athlete_id.load((athlete.id, days))
    assert found is not None  # one row per athlete asked for
    return found


# ---------------------------------------------------------------- questionnaires
def _checked(ctx: Context, title: str, given: list[QuestionInput]) -> tuple[str, list[Any]]:
    limits = ctx.settings.limits
    return (
        validate.text(title, field="title", max_length=limits.max_name_length),
        answers.questions(given, limits),
    )


async def create_questionnaire(
    ctx: Context, *, coach_id: int, title: str, questions: list[QuestionInput]
) -> QuestionnaireRecord:
    require(can_edit_questionnaires(ctx.viewer, coach_id), "Coaches define their own")
    title, checked = _checked(ctx, title, questions)
    async with ctx.db.transaction() as conn:
        return await feedback.create(conn, coach_id=coach_id, title=title, questions=checked)


async def revise_questionnaire(
    ctx: Context, questionnaire_id: int, *, title: str, questions: list[QuestionInput]
) -> QuestionnaireRecord:
    """A new version; answers given to earlier versions keep theirs."""
    current = await _owned(ctx, questionnaire_id)
    require(can_edit_questionnaires(ctx.viewer, current.coach_id), "Coaches edit their own")
    title, checked = _checked(ctx, title, questions)
    async with ctx.db.transaction() as conn:
        return await feedback.revise(
            conn, questionnaire_id=questionnaire_id, title=title, questions=checked
        )


async def _owned(ctx: Context, questionnaire_id: int) -> QuestionnaireRecord:
    found = (await feedback.latest(ctx.db.pool, ids=[questionnaire_id])).get(questionnaire_id)
    if found is None:
        raise missing(ctx.viewer, "Questionnaire", questionnaire_id, "You may not see this")
    return found


async def questionnaire(ctx: Context, questionnaire_id: int) -> QuestionnaireRecord:
    """The latest version, for its coach, admins and the athletes that coach coaches."""
    found = await _owned(ctx, questionnaire_id)
    if not can_read_questionnaire(
        ctx.viewer, found.coach_id, coached=await _coached_by(ctx, found.coach_id)
    ):
        raise PermissionDenied("You may not see this questionnaire")
    return found


async def questionnaires_of(ctx: Context, coach_id: int) -> list[QuestionnaireRecord]:
    """A coach's questionnaires (latest versions), for whom may read them."""
    if not can_read_questionnaire(ctx.viewer, coach_id, coached=await _coached_by(ctx, coach_id)):
        raise PermissionDenied("The coach, its athletes and admins see its questionnaires")
    return await ctx.loaders.questionnaires_by_coach_id.load(coach_id)


async def _coached_by(ctx: Context, coach_id: int) -> bool:
    athlete_id = ctx.viewer.athlete_id
    if athlete_id is None:
        return False
    coaches = await ctx.loaders.coaches_by_athlete_id.load(athlete_id)
    return any(c.id == coach_id for c in coaches)


async def submit_feedback(
    ctx: Context, *, session_id: int, questionnaire_id: int, given: object
) -> FeedbackRecord:
    """The session's athlete answers one of its coach's questionnaires, once, after the
    session; answers are checked against the questionnaire's latest version."""
    found = await ctx.loaders.session_by_id.load(session_id)
    if found is None or not can_read_session(ctx.viewer, found):
        raise missing(ctx.viewer, "TrainingSession", session_id, "You may not give feedback")
    require(can_give_feedback(ctx.viewer, found), "Only the session's athlete gives feedback")
    if found.status != "COMPLETED":
        raise Conflict("Feedback is given after the session: it has not completed")
    asked = (await feedback.latest(ctx.db.pool, ids=[questionnaire_id])).get(questionnaire_id)
    if asked is None or asked.coach_id != found.coach_id:
        raise InvalidInput(
            "questionnaireId names no questionnaire of this session's coach",
            field="questionnaireId",
            code="NOT_THE_COACHS",
        )
    checked = answers.answers(asked.questions, given, ctx.settings.limits)
    async with ctx.db.transaction() as conn:
        return await feedback.submit(
            conn,
            session_id=session_id,
            questionnaire_id=questionnaire_id,
            version=asked.version,
            athlete_id=found.athlete_id,
            answers=checked,
        )


async def session_feedback(ctx: Context, session: SessionRecord) -> list[FeedbackRecord]:
    """A session's feedback: read with the session (its read rule was applied to reach it)."""
    return await ctx.loaders.feedback_by_session_id.load(session.id)


async def answered_version(ctx: Context, given: FeedbackRecord) -> QuestionnaireRecord:
    """The questionnaire as it was when the feedback was given."""
    key = (given.questionnaire_id, given.version)
    found = await ctx.loaders.questionnaire_version.load(key)
    if found is None:
        raise NotFound("Questionnaire", given.questionnaire_id)
    return found


async def answers_over_time(
    ctx: Context, *, athlete_id: int, questionnaire_id: int, key: str, last: int | None
) -> list[Answer]:
    """One athlete's answers to one question, oldest first, in the sessions the viewer may
    read (a coach: its own sessions with the athlete)."""
    limit = ctx.settings.limits.max_answer_history
    count = validate.in_range(50 if last is None else last, field="last", low=0, high=limit)
    await queries.athlete(ctx, athlete_id)  # NOT_FOUND or FORBIDDEN before anything else
    asked = await _owned(ctx, questionnaire_id)
    if not any(q.key == key for q in asked.questions):
        known = await _ever_asked(ctx, questionnaire_id, key)
        if not known:
            raise InvalidInput(
                f"{key!r} is no question of this questionnaire", field="key", code="UNKNOWN_KEY"
            )
    return await feedback.answers_over_time(
        ctx.db.pool,
        athlete_id=athlete_id,
        questionnaire_id=questionnaire_id,
        key=key,
        scope=sessions_visible_to(ctx.viewer),
        last=count,
    )


async def _ever_asked(ctx: Context, questionnaire_id: int, key: str) -> bool:
    """Whether some version asked `key` (a question since removed still has its answers)."""
    current = await _owned(ctx, questionnaire_id)
    keys = [(questionnaire_id, v) for v in range(1, current.version)]
    found = await ctx.loaders.questionnaire_version.load_many(keys)
    return any(r is not None and any(q.key == key for q in r.questions) for r in found)


# ---------------------------------------------------------------- leaderboards
async def leaderboard(
    ctx: Context, *, program_id: int, metric: str, period: str, first: int | None
) -> list[tuple[int, float, AthleteRecord]]:
    """(rank, value, athlete) of the program's best athletes, for its coach, its enrolled
    athletes and admins. Athletes gone since Redis last heard of them are left out."""
    limit = ctx.settings.limits.max_leaderboard_size
    size = validate.in_range(10 if first is None else first, field="first", low=0, high=limit)
    program = await queries.program(ctx, program_id)
    athlete_id = ctx.viewer.athlete_id
    enrolled = athlete_id is not None and await standings.enrolled(
        ctx.db.pool, program_id=program_id, athlete_id=athlete_id
    )
    require(
        can_see_leaderboard(ctx.viewer, program.coach_id, enrolled=enrolled),
        "The program's coach and its athletes see its leaderboard",
    )
    if size == 0:
        return []
    entries = await ctx.boards.top(
        program_id=program_id, metric=metric, period=period, limit=size, now=datetime.now(UTC)
    )
    records = await ctx.loaders.athlete_by_id.load_many([e.athlete_id for e in entries])
    shown = [(e, r) for e, r in zip(entries, records, strict=True) if r is not None]
    return [(rank, e.value, r) for rank, (e, r) in enumerate(shown, start=1)]


async def refresh_boards(ctx: Context, *, program_id: int | None, athlete_id: int) -> None:
    """After a session of a program completed, or an enrollment: the athlete's places on that
    program's boards (after commit). A board store that fails is logged, not the caller's
    failure: the change is committed, and the next refresh or a reindex puts it right."""
    if program_id is None:
        return
    try:
        await ctx.boards.refresh(
            program_id=program_id, athlete_id=athlete_id, now=datetime.now(UTC)
        )
    except DomainError as err:
        log.warning("leaderboard refresh of program %s failed: %s", program_id, err.message)
