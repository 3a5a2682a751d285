"""Read paths: policy first, then loaders or stores; results are records and pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from strawberry.dataloader import DataLoader

from coachgraph.errors import NotFound, PermissionDenied
from coachgraph.resolvers import validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import (
    AthleteAccess,
    AthleteFacts,
    athlete_access,
    athlete_scope,
    athletes_visible_to,
    can_read_session,
    sessions_visible_to,
)
from coachgraph.stores import athletes, coaches, metrics, programs, skills
from coachgraph.stores.records import (
    AthleteRecord,
    CoachRecord,
    Page,
    ProgramRecord,
    SessionRecord,
    SkillRecord,
)

T = TypeVar("T")
Count = Callable[[], Awaitable[int]]


async def _found(loader: DataLoader[int, T | None], type_name: str, key: int) -> T:
    """What `loader` holds for `key`; NotFound(`type_name`, key) if nothing."""
    found = await loader.load(key)
    if found is None:
        raise NotFound(type_name, key)
    return found


async def coach(ctx: Context, coach_id: int) -> CoachRecord:
    return await _found(ctx.loaders.coach_by_id, "Coach", coach_id)


async def skill(ctx: Context, skill_id: int) -> SkillRecord:
    return await _found(ctx.loaders.skill_by_id, "Skill", skill_id)


async def program(ctx: Context, program_id: int) -> ProgramRecord:
    return await _found(ctx.loaders.program_by_id, "Program", program_id)


async def athlete_facts(ctx: Context, found: AthleteRecord) -> AthleteFacts:
    """What the athlete rule reads, for this viewer: whether the coach its scope names
    coaches the athlete now (one cached query per request)."""
    coach_id = athletes_visible_to(ctx.viewer).coach_id
    coaches: frozenset[int] = frozenset()
    if coach_id is not None:
        coached = await ctx.loaders.coached_athlete_ids_by_coach_id.load(coach_id)
        if coached is not None and found.id in coached:
            coaches = frozenset({coach_id})
    return AthleteFacts(found.id, found.looking_for_coach, coaches)


async def access_to(ctx: Context, found: AthleteRecord) -> AthleteAccess:
    return athlete_access(ctx.viewer, await athlete_facts(ctx, found))


async def athlete(ctx: Context, athlete_id: int) -> AthleteRecord:
    """An athlete the viewer may at least see the profile of."""
    found = await _found(ctx.loaders.athlete_by_id, "Athlete", athlete_id)
    if await access_to(ctx, found) is AthleteAccess.NONE:
        raise PermissionDenied("You may not see this athlete")
    return found


async def require_full_access(ctx: Context, found: AthleteRecord) -> None:
    """Coaches, enrollments and sessions of an athlete are for itself, its coaches and admins."""
    if await access_to(ctx, found) is not AthleteAccess.FULL:
        raise PermissionDenied("Only the athlete, its coaches and admins may see this")


async def session(ctx: Context, session_id: int) -> SessionRecord:
    found = await _found(ctx.loaders.session_by_id, "TrainingSession", session_id)
    if not can_read_session(ctx.viewer, found):
        raise PermissionDenied("You may not see this session")
    return found


async def coaches_page(
    ctx: Context,
    first: int | None,
    after: str | None,
    *,
    sport: str | None,
    city: str | None,
    accepting: bool | None,
) -> tuple[Page[CoachRecord], Count]:
    pool, sport = ctx.db.pool, _norm(sport)
    return await _listed(
        ctx,
        first,
        after,
        lambda size, cursor: coaches.list_page(
            pool, first=size, after=cursor, sport=sport, city=city, accepting=accepting
        ),
        lambda: coaches.count(pool, sport=sport, city=city, accepting=accepting),
    )


async def athletes_page(
    ctx: Context,
    first: int | None,
    after: str | None,
    *,
    sport: str | None,
    city: str | None,
    looking_for_coach: bool | None,
) -> tuple[Page[AthleteRecord], Count]:
    pool, sport, scope = ctx.db.pool, _norm(sport), athlete_scope(ctx.viewer)
    looking = looking_for_coach
    return await _listed(
        ctx,
        first,
        after,
        lambda size, cursor: athletes.list_page(
            pool,
            scope=scope,
            first=size,
            after=cursor,
            sport=sport,
            city=city,
            looking_for_coach=looking,
        ),
        lambda: athletes.count(
            pool, scope=scope, sport=sport, city=city, looking_for_coach=looking
        ),
    )


async def skills_page(
    ctx: Context, first: int | None, after: str | None, *, sport: str | None
) -> tuple[Page[SkillRecord], Count]:
    pool, sport = ctx.db.pool, _norm(sport)
    return await _listed(
        ctx,
        first,
        after,
        lambda size, cursor: skills.list_page(pool, first=size, after=cursor, sport=sport),
        lambda: skills.count(pool, sport=sport),
        default=50,
    )


async def programs_page(
    ctx: Context,
    first: int | None,
    after: str | None,
    *,
    sport: str | None,
    coach_id: int | None,
    max_level: int | None,
) -> tuple[Page[ProgramRecord], Count]:
    pool, sport = ctx.db.pool, _norm(sport)
    return await _listed(
        ctx,
        first,
        after,
        lambda size, cursor: programs.list_page(
            pool, first=size, after=cursor, sport=sport, coach_id=coach_id, max_level=max_level
        ),
        lambda: programs.count(pool, sport=sport, coach_id=coach_id, max_level=max_level),
    )


async def _listed(
    ctx: Context,
    first: int | None,
    after: str | None,
    fetch: Callable[[int, int | None], Awaitable[Page[T]]],
    count: Count,
    *,
    default: int = validate.DEFAULT_FIRST,
) -> tuple[Page[T], Count]:
    """The page `fetch(size, cursor)` reads and the count thunk, which runs only if
    totalCount is asked for (both apply the same filter)."""
    size, cursor = validate.page_args(first, after, ctx.settings.limits, default=default)
    return await fetch(size, cursor), count


async def athletes_of_coaches(
    ctx: Context, coach_ids: list[int], first: int | None, after: str | None
) -> list[Page[AthleteRecord]]:
    """Per coach, the athletes it coaches, as far as the viewer may see them (anonymous:
    none): one page each, the same page arguments for all."""
    size, cursor = validate.page_args(first, after, ctx.settings.limits)
    scope = athletes_visible_to(ctx.viewer)
    if scope.nobody:
        return [Page([], False, 0) for _ in coach_ids]
    loader = ctx.loaders.athlete_page_by_coach_id
    return await loader.load_level([(coach_id, size, cursor, scope) for coach_id in coach_ids])


async def sessions_of(
    ctx: Context,
    parent: str,
    parent_id: int,
    first: int | None,
    after: str | None,
    status: str | None,
) -> Page[SessionRecord]:
    """A coach's or athlete's sessions that the viewer may see (anonymous: none)."""
    size, cursor = validate.page_args(first, after, ctx.settings.limits)
    if sessions_visible_to(ctx.viewer).nobody:
        return Page([], False, 0)
    loader = (
        ctx.loaders.session_page_by_coach_id
        if parent == "coach"
        else ctx.loaders.session_page_by_athlete_id
    )
    return await loader.load((parent_id, size, cursor, status))


def _norm(sport: str | None) -> str | None:
    return sport.strip().lower() if sport else None


async def samples_page(
    ctx: Context, session_id: int, kinds: list[str] | None, first: int | None, after: str | None
) -> tuple[Page[metrics.Sample], Count]:
    """A page of a session's samples in cursor order (the session is already visible)."""
    limits = ctx.settings.limits
    size = 1000 if first is None else first
    validate.in_range(size, field="first", low=0, high=limits.max_sample_page)
    cursor = validate.page_args(0, after, limits)[1] or 0
    rows = await metrics.after(
        ctx.db.pool, session_id=session_id, after_seq=cursor, kinds=kinds, limit=size + 1
    )
    page = Page(rows[:size], len(rows) > size)
    return page, lambda: metrics.count(ctx.db.pool, session_id=session_id, kinds=kinds)


def compacted(ctx: Context, session_id: int) -> Callable[[], Awaitable[bool]]:
    """Asked lazily: whether retention rolled up and dropped raw samples of the session."""

    async def ask() -> bool:
        return (await metrics.retained(ctx.db.pool, session_id=session_id)).compacted

    return ask


async def series(
    ctx: Context, session_id: int, kind: str, bucket_seconds: int
) -> list[metrics.Bucket]:
    validate.in_range(bucket_seconds, field="bucketSeconds", low=1, high=86_400)
    return await metrics.series(
        ctx.db.pool,
        session_id=session_id,
        kind=kind,
        bucket_seconds=bucket_seconds,
        limit=ctx.settings.limits.max_series_buckets,
    )
