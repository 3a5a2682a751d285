"""Matchmaking and recommendations: policy, then one graph call, then the scoring module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from coachgraph.errors import NotFound
from coachgraph.graph import blend, recommend
from coachgraph.graph.collab import learned_candidates, learned_scores
from coachgraph.graph.model import ProgramCandidate, ProgramInfo, ProgramNeighbourhood
from coachgraph.graph.recommend import Match
from coachgraph.resolvers import queries, validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import can_match_athletes, can_match_coaches, require
from coachgraph.stores import collab

N = TypeVar("N")
N_co = TypeVar("N_co", covariant=True)


def _first(ctx: Context, first: int | None, default: int = 10) -> int:
    size = default if first is None else first
    return validate.in_range(size, field="first", low=0, high=ctx.settings.limits.max_matches)


async def _full_access(ctx: Context, athlete_id: int) -> None:
    """The athlete itself, its coaches and admins may plan for it."""
    await queries.require_full_access(ctx, await queries.athlete(ctx, athlete_id))


async def _exists(ctx: Context, type_name: str, raw_id: int) -> None:
    """A record missing from the graph: NotFound, unless the projection has not caught up."""
    loader = ctx.loaders.athlete_by_id if type_name == "Athlete" else ctx.loaders.coach_by_id
    if await loader.load(raw_id) is None:
        raise NotFound(type_name, raw_id)


class _Neighbourhood(Protocol[N_co]):
    """A graph read of one record's neighbourhood (None: the record is not in the graph)."""

    def __call__(self, record_id: int, /, *, limit: int) -> Awaitable[N_co | None]: ...


async def _matched(
    ctx: Context,
    first: int | None,
    neighbourhood: _Neighbourhood[N],
    rank: Callable[[N, int], list[Match]],
    type_name: str,
    raw_id: int,
) -> tuple[list[Match], N | None]:
    """The top `first` candidates around one record, and the neighbourhood they were ranked
    from; none in the graph: no matches, or NotFound if the record is missing from the
    database too."""
    size = _first(ctx, first)
    found = await neighbourhood(raw_id, limit=ctx.settings.limits.match_candidates)
    if found is None:
        await _exists(ctx, type_name, raw_id)
        return [], None
    return rank(found, size), found


async def match_coaches(ctx: Context, athlete_id: int, first: int | None) -> list[Match]:
    return (await match_coaches_among(ctx, athlete_id, first))[0]


async def match_coaches_among(
    ctx: Context, athlete_id: int, first: int | None
) -> tuple[list[Match], frozenset[int]]:
    """match_coaches, and the ids of every candidate the ranking weighed, not only the `first`
    it returns (live matches decide from them which graph changes concern the athlete)."""
    require(can_match_coaches(ctx.viewer, athlete_id), "Only the athlete or an admin may match it")
    size = _first(ctx, first)
    limits = ctx.settings.limits
    # the learned signal (COACHGRAPH_LEARNED_MATCHING, on), from PostgreSQL whichever graph
    # backend runs, weighted as fitted on this deployment's history (graph/blend.py, cached):
    # its nearest coaches join the graph's candidates, then every candidate gets its
    # similarity; with a learned weight of 0 (no fit, too little history, or a fit that found
    # no gain) or the setting off, the content ranking alone, with no statement for it
    weights = recommend.CONTENT
    if ctx.settings.learned_matching:
        weights = await blend.current(ctx.db.pool, ttl=limits.collab_weights_ttl_seconds)
    learned_on = weights.learned > 0
    nearest = (
        await learned_candidates(ctx.db.pool, athlete_id, limit=limits.collab_candidates)
        if learned_on
        else []
    )
    found = await ctx.graph.coach_neighbourhood(
        athlete_id, limit=limits.match_candidates, include=nearest
    )
    if found is None:
        await _exists(ctx, "Athlete", athlete_id)
        return [], frozenset()
    candidates = [c.info.id for c in found.candidates]
    if not learned_on:
        return recommend.rank_coaches(found, size, None, weights), frozenset(candidates)
    learned = await learned_scores(ctx.db.pool, athlete_id, candidates)
    ranked = recommend.rank_coaches(found, size, learned, weights)
    return ranked, frozenset(candidates)


async def match_athletes(ctx: Context, coach_id: int, first: int | None) -> list[Match]:
    require(can_match_athletes(ctx.viewer, coach_id), "Only the coach or an admin may match it")
    neighbourhood, rank = ctx.graph.roster_neighbourhood, recommend.rank_athletes
    return (await _matched(ctx, first, neighbourhood, rank, "Coach", coach_id))[0]


async def recommend_programs(ctx: Context, athlete_id: int, first: int | None) -> list[Match]:
    await _full_access(ctx, athlete_id)
    size = _first(ctx, first, default=5)
    limit = ctx.settings.limits.match_candidates
    found = await ctx.graph.program_neighbourhood(athlete_id, limit=limit)
    if found is None:
        return []
    if found.candidates:
        return recommend.rank_programs(found, size)
    # nothing at its level for its goals: the nearest programs of its sport, each with what
    # keeps it from fitting (above its level, few of its goals)
    near = await collab.nearest_programs(ctx.db.pool, athlete_id, limit=limit)
    options = tuple(
        ProgramCandidate(ProgramInfo(p.id, p.sport, p.level, p.coach_id), p.skills, ())
        for p in near
    )
    return recommend.rank_programs(ProgramNeighbourhood(found.athlete, options), size)


async def skill_path(
    ctx: Context, athlete_id: int, target_id: int
) -> tuple[list[int], list[int]] | None:
    await _full_access(ctx, athlete_id)
    await queries.skill(ctx, target_id)
    found = await ctx.graph.path_neighbourhood(athlete_id, target_id)
    if found is None:
        return None
    return recommend.skill_path(found, max_programs=ctx.settings.limits.skill_path_max_programs)
