"""Write paths: decode, authorise, validate, then one transaction of rows plus outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from coachgraph.errors import InvalidInput, NotFound
from coachgraph.resolvers import coaching, live, validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import (
    AthleteFacts,
    SessionFacts,
    can_assign_coach,
    can_edit_athlete,
    can_edit_coach,
    can_manage_catalogue,
    can_manage_session,
    missing,
    require,
)
from coachgraph.stores import athletes, coaches, programs, sessions, skills
from coachgraph.stores.records import (
    UNSET,
    AthleteChanges,
    AthleteRecord,
    CoachChanges,
    CoachRecord,
    EnrollmentRecord,
    ProgramRecord,
    SessionRecord,
    SkillRecord,
    Unset,
)
from coachgraph.stores.sql import Executor

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoachFields:
    """A coach's fields as the client sent them: UNSET where left out, None where null."""

    name: str | Unset | None = UNSET
    sports: list[str] | Unset | None = UNSET
    timezone: str | Unset | None = UNSET
    capacity: int | Unset | None = UNSET
    city: str | Unset | None = UNSET
    headline: str | Unset | None = UNSET
    bio: str | Unset | None = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class AthleteFields:
    """An athlete's fields as the client sent them: UNSET where left out, None where null."""

    name: str | Unset | None = UNSET
    sport: str | Unset | None = UNSET
    timezone: str | Unset | None = UNSET
    level: int | Unset | None = UNSET
    city: str | Unset | None = UNSET
    looking_for_coach: bool | Unset | None = UNSET


def _coach_changes(ctx: Context, given: CoachFields) -> CoachChanges:
    """Validated values of the fields given (checked in this order; the first error wins)."""
    lim = ctx.settings.limits
    return CoachChanges(
        name=_required(
            given.name,
            "name",
            lambda v: validate.text(v, field="name", max_length=lim.max_name_length),
        ),
        sports=_required(given.sports, "sports", lambda v: validate.sports(v, lim)),
        timezone=_required(given.timezone, "timezone", validate.timezone),
        capacity=_required(
            given.capacity,
            "capacity",
            lambda v: validate.in_range(v, field="capacity", low=0, high=lim.max_capacity),
        ),
        city=_nullable(
            given.city,
            lambda v: validate.optional_text(v, field="city", max_length=lim.max_name_length),
        ),
        headline=_nullable(
            given.headline,
            lambda v: validate.optional_text(
                v, field="headline", max_length=lim.max_headline_length
            ),
        ),
        bio=_nullable(
            given.bio,
            lambda v: validate.optional_text(v, field="bio", max_length=lim.max_text_length),
        ),
    )


def _athlete_changes(ctx: Context, given: AthleteFields) -> AthleteChanges:
    """Validated values of the fields given (checked in this order; the first error wins)."""
    lim = ctx.settings.limits
    return AthleteChanges(
        name=_required(
            given.name,
            "name",
            lambda v: validate.text(v, field="name", max_length=lim.max_name_length),
        ),
        sport=_required(given.sport, "sport", validate.sport),
        timezone=_required(given.timezone, "timezone", validate.timezone),
        level=_required(given.level, "level", validate.level),
        city=_nullable(
            given.city,
            lambda v: validate.optional_text(v, field="city", max_length=lim.max_name_length),
        ),
        looking_for_coach=_required(given.looking_for_coach, "looking_for_coach", bool),
    )


def _required(value: T | Unset | None, name: str, check: Callable[[T], V]) -> V | Unset:
    """A given value checked; null is refused (the column needs a value)."""
    if isinstance(value, Unset):
        return value
    if value is None:
        field = _camel(name)
        raise InvalidInput(f"{field} cannot be null", field=field, code="REQUIRED")
    return check(value)


def _nullable(value: T | Unset | None, check: Callable[[T], V | None]) -> V | Unset | None:
    """A given value checked; null stays null."""
    if isinstance(value, Unset) or value is None:
        return value
    return check(value)


def _known(value: T | Unset, name: str) -> T:
    """A value a new row needs (the schema makes the client send it)."""
    if isinstance(value, Unset):
        field = _camel(name)
        raise InvalidInput(f"{field} is required", field=field, code="REQUIRED")
    return value


def _or(value: T | Unset, default: T) -> T:
    """A value a new row may leave to its default."""
    return default if isinstance(value, Unset) else value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def _athlete_now(conn: Executor, athlete_id: int) -> AthleteRecord:
    """The athlete as this transaction sees it, after a write to it."""
    return (await athletes.get_many(conn, ids=[athlete_id]))[athlete_id]


async def create_coach(ctx: Context, given: CoachFields) -> CoachRecord:
    require(can_manage_catalogue(ctx.viewer), "Only admins create coaches")
    new = _coach_changes(ctx, given)
    async with ctx.db.transaction() as conn:
        return await coaches.create(
            conn,
            name=_known(new.name, "name"),
            sports=_known(new.sports, "sports"),
            timezone=_known(new.timezone, "timezone"),
            capacity=_known(new.capacity, "capacity"),
            city=_or(new.city, None),
            headline=_or(new.headline, None),
            bio=_or(new.bio, None),
        )


async def update_coach(ctx: Context, coach_id: int, given: CoachFields) -> CoachRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "You may only edit your own profile")
    changes = _coach_changes(ctx, given)
    async with ctx.db.transaction() as conn:
        return await coaches.update(conn, coach_id=coach_id, changes=changes)


async def create_athlete(ctx: Context, given: AthleteFields) -> AthleteRecord:
    require(can_manage_catalogue(ctx.viewer), "Only admins create athletes")
    new = _athlete_changes(ctx, given)
    async with ctx.db.transaction() as conn:
        return await athletes.create(
            conn,
            name=_known(new.name, "name"),
            sport=_known(new.sport, "sport"),
            timezone=_known(new.timezone, "timezone"),
            level=_known(new.level, "level"),
            city=_or(new.city, None),
            looking_for_coach=_or(new.looking_for_coach, False),
        )


async def update_athlete(ctx: Context, athlete_id: int, given: AthleteFields) -> AthleteRecord:
    require(can_edit_athlete(ctx.viewer, athlete_id), "You may only edit your own profile")
    changes = _athlete_changes(ctx, given)
    async with ctx.db.transaction() as conn:
        return await athletes.update(conn, athlete_id=athlete_id, changes=changes)


async def create_skill(
    ctx: Context, *, slug: str, name: str, sport: str, prerequisite_ids: list[int]
) -> SkillRecord:
    require(can_manage_catalogue(ctx.viewer), "Only admins create skills")
    lim = ctx.settings.limits
    slug = validate.text(slug, field="slug", max_length=lim.max_slug_length).lower()
    if not all(part.isascii() and part.isalnum() for part in slug.split("-")):
        raise InvalidInput(
            "slug must be lower-case letters and digits separated by hyphens",
            field="slug",
            code="INVALID_SLUG",
        )
    async with ctx.db.transaction() as conn:
        return await skills.create(
            conn,
            slug=slug,
            name=validate.text(name, field="name", max_length=lim.max_name_length),
            sport=validate.sport(sport),
            prerequisite_ids=prerequisite_ids,
        )


async def set_coach_skill(ctx: Context, coach_id: int, skill_id: int, level: int) -> CoachRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "You may only change your own skills")
    validate.level(level)
    async with ctx.db.transaction() as conn:
        await coaches.set_skill(conn, coach_id=coach_id, skill_id=skill_id, level=level)
        return (await coaches.get_many(conn, ids=[coach_id]))[coach_id]


async def set_athlete_skill(
    ctx: Context, athlete_id: int, skill_id: int, level: int
) -> AthleteRecord:
    require(can_edit_athlete(ctx.viewer, athlete_id), "You may only change your own skills")
    validate.level(level)
    async with ctx.db.transaction() as conn:
        await athletes.set_skill(conn, athlete_id=athlete_id, skill_id=skill_id, level=level)
        return await _athlete_now(conn, athlete_id)


async def set_athlete_goals(ctx: Context, athlete_id: int, skill_ids: list[int]) -> AthleteRecord:
    require(can_edit_athlete(ctx.viewer, athlete_id), "You may only change your own goals")
    async with ctx.db.transaction() as conn:
        for missing_id in await skills.missing(conn, ids=skill_ids):
            raise NotFound("Skill", missing_id)
        await athletes.set_goals(conn, athlete_id=athlete_id, skill_ids=skill_ids)
        return await _athlete_now(conn, athlete_id)


async def create_program(
    ctx: Context,
    *,
    coach_id: int,
    title: str,
    sport: str,
    level: int,
    duration_weeks: int,
    skill_ids: list[int],
    description: str | None,
) -> ProgramRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "You may only create your own programs")
    lim = ctx.settings.limits
    title = validate.text(title, field="title", max_length=lim.max_name_length)
    sport = validate.sport(sport)
    validate.level(level)
    validate.in_range(duration_weeks, field="durationWeeks", low=1, high=lim.max_duration_weeks)
    description = validate.optional_text(
        description, field="description", max_length=lim.max_text_length
    )
    async with ctx.db.transaction() as conn:
        return await programs.create(
            conn,
            coach_id=coach_id,
            skill_ids=skill_ids,
            title=title,
            sport=sport,
            level=level,
            duration_weeks=duration_weeks,
            description=description,
        )


async def enroll(ctx: Context, athlete_id: int, program_id: int) -> EnrollmentRecord:
    require(can_edit_athlete(ctx.viewer, athlete_id), "You may only enroll yourself")
    async with ctx.db.transaction() as conn:
        made = await programs.enroll(conn, athlete_id=athlete_id, program_id=program_id)
    # earlier completed sessions of the program now count on its boards
    await coaching.refresh_boards(ctx, program_id=program_id, athlete_id=athlete_id)
    return made


async def assign_coach(ctx: Context, coach_id: int, athlete_id: int) -> AthleteRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "Coaches may only assign themselves")
    async with ctx.db.transaction() as conn:
        # the athlete's row stays as read (FOR SHARE) until commit: it cannot stop looking
        # for a coach between the check and the assignment
        found = await athletes.get_for_share(conn, athlete_id=athlete_id)
        facts = AthleteFacts(found.id, found.looking_for_coach)
        require(
            can_assign_coach(ctx.viewer, coach_id, facts),
            "Coaches may only take athletes looking for a coach",
        )
        await coaches.assign(conn, coach_id=coach_id, athlete_id=athlete_id)
        return await _athlete_now(conn, athlete_id)


async def unassign_coach(ctx: Context, coach_id: int, athlete_id: int) -> AthleteRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "Coaches may only unassign themselves")
    async with ctx.db.transaction() as conn:
        await coaches.unassign(conn, coach_id=coach_id, athlete_id=athlete_id)
        return await _athlete_now(conn, athlete_id)


async def schedule_session(
    ctx: Context,
    *,
    coach_id: int,
    athlete_id: int,
    program_id: int | None,
    scheduled_at: datetime,
    notes: str | None,
) -> SessionRecord:
    require(can_edit_coach(ctx.viewer, coach_id), "Coaches schedule their own sessions")
    if scheduled_at.tzinfo is None:
        raise InvalidInput(
            "scheduledAt needs a time zone offset", field="scheduledAt", code="INVALID"
        )
    notes = validate.optional_text(
        notes, field="notes", max_length=ctx.settings.limits.max_text_length
    )
    async with ctx.db.transaction() as conn:
        message = "Coaches schedule sessions only with athletes they coach"
        await _require_manages(ctx, conn, coach_id, athlete_id, message)
        return await sessions.schedule(
            conn,
            coach_id=coach_id,
            athlete_id=athlete_id,
            program_id=program_id,
            scheduled_at=scheduled_at,
            notes=notes,
        )


async def _require_manages(
    ctx: Context, conn: Executor, coach_id: int, athlete_id: int, message: str
) -> None:
    """The viewer may write sessions between this coach and athlete (API.md: a coach only
    while it coaches the athlete). The relationship is held until commit, so an unassignment
    waits for the write."""
    coached = await coaches.coaches_now(conn, coach_id=coach_id, athlete_id=athlete_id, lock=True)
    facts = SessionFacts(coach_id, athlete_id, coached)
    require(can_manage_session(ctx.viewer, facts), message)


async def move_session(ctx: Context, session_id: int, to: str) -> SessionRecord:
    """Start (to LIVE) or end (to COMPLETED) a session; only its coach or an admin may."""
    async with ctx.db.transaction() as conn:
        found = (await sessions.get_many(conn, ids=[session_id])).get(session_id)
        if found is None:
            raise missing(
                ctx.viewer, "TrainingSession", session_id, "You may not change this session"
            )
        message = "Only its coach, while it coaches the athlete, may change this session"
        await _require_manages(ctx, conn, found.coach_id, found.athlete_id, message)
        moved = await sessions.transition(conn, session_id=session_id, to=to)
    await live.announce_status(ctx.broker, moved)  # after commit
    if moved.status == "COMPLETED":
        await coaching.refresh_boards(ctx, program_id=moved.program_id, athlete_id=moved.athlete_id)
    return moved
