"""Search: the viewer's scope (API.md), validated input, the search backend, and personal
ranking for athletes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from coachgraph.errors import InvalidInput
from coachgraph.resolvers import validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import Role, Viewer
from coachgraph.search.model import KINDS, Filters, Hit, Prepared, Query, Scope


def scope_for(viewer: Viewer, kinds: list[str] | None) -> Scope:
    """Anonymous viewers and athletes never find athletes; coaches find those looking for a
    coach and their own; admins find everything."""
    wanted = list(dict.fromkeys(kinds)) if kinds else list(KINDS)
    if viewer.is_admin:
        return Scope(wanted, all_athletes=True)
    if viewer.role is Role.COACH:
        return Scope(wanted, coach_id=viewer.coach_id)
    return Scope([k for k in wanted if k != "ATHLETE"])


@dataclass
class Plan:
    """A validated search: the page it asks for and the backend's prepared query (None: no
    results, for want of words or of kinds the viewer may see)."""

    prepared: Prepared | None
    size: int
    offset: int
    personal: bool = False  # an athlete searching coaches or programs


@dataclass
class Results:
    hits: list[Hit]
    has_next: bool
    offset: int
    prepared: Prepared | None


async def plan(
    ctx: Context,
    *,
    text: str,
    kinds: list[str] | None,
    filters: Filters,
    first: int | None,
    after: str | None,
) -> Plan:
    limits = ctx.settings.limits
    size, cursor = validate.page_args(first, after, limits, default=10)
    if len(text) > limits.max_search_length:
        raise InvalidInput(
            f"query must be at most {limits.max_search_length} characters",
            field="query",
            code="TOO_LONG",
        )
    for name, level in (("minLevel", filters.min_level), ("maxLevel", filters.max_level)):
        if level is not None:
            validate.level(level, field=f"filter.{name}")
    for name, values in (("sports", filters.sports), ("cities", filters.cities)):
        if values is not None and len(values) > limits.max_list_input:
            raise InvalidInput(f"filter.{name} lists too many values", field=f"filter.{name}")
    scope = scope_for(ctx.viewer, kinds)
    prepared = None
    if scope.kinds:
        query = Query(text, scope, filters, limits.max_search_words)
        prepared = await ctx.search.prepare(query)
    personal = ctx.viewer.role is Role.ATHLETE and bool({"COACH", "PROGRAM"} & set(scope.kinds))
    return Plan(prepared, size, cursor or 0, personal)


async def page(ctx: Context, planned: Plan) -> Results:
    """The hits of the planned page; for an athlete, personally ranked (coaches, programs)."""
    prepared, size, offset = planned.prepared, planned.size, planned.offset
    if prepared is None:
        return Results([], False, offset, None)
    window = ctx.settings.limits.personal_rank_window
    athlete = ctx.viewer.athlete_id
    if planned.personal and athlete is not None and offset < window:
        # the same window is re-ranked for every page, so pages neither repeat nor skip
        pool = await ctx.search.hits(prepared, offset=0, limit=max(window, offset + size + 1))
        ranked = await personal_rank(ctx, athlete, pool[:window]) + pool[window:]
        found = ranked[offset : offset + size + 1]
    else:
        found = await ctx.search.hits(prepared, offset=offset, limit=size + 1)
    return Results(found[:size], len(found) > size, offset, prepared)


async def personal_rank(ctx: Context, athlete_id: int, hits: list[Hit]) -> list[Hit]:
    """Text relevance blended with graph fit, for an athlete's best text matches.

    score = (1 - w) · text / best text score in the window + w · fit, where fit is the share
    of the athlete's goal skills a coach teaches or a program develops (0 for skills), and w
    is `personal_rank_weight_percent`. An athlete without goals keeps the text order."""
    fit = await ctx.graph.goal_fit(
        athlete_id,
        coach_ids=[h.id for h in hits if h.kind == "COACH"],
        program_ids=[h.id for h in hits if h.kind == "PROGRAM"],
    )
    if not fit.goals or not hits:
        return hits
    weight = ctx.settings.limits.personal_rank_weight_percent / 100
    best = max(h.score for h in hits) or 1.0
    blended = [
        replace(h, score=(1 - weight) * h.score / best + weight * fit.share(h.kind, h.id))
        for h in hits
    ]
    # sorted() is stable: equal blends keep the backend's order
    return sorted(blended, key=lambda h: -h.score)
