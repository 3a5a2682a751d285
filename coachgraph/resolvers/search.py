"""Search: the viewer's scope (API.md), validated input, the search backend, and personal
ranking for athletes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from coachgraph.errors import InvalidInput
from coachgraph.resolvers import queries, validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.policy import AthleteAccess, search_scope
from coachgraph.search.model import Filters, Hit, Prepared, Query


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
    size, cursor = validate.page_args(
        first, after, limits, default=10, max_cursor=limits.max_search_offset
    )
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
    scope = search_scope(ctx.viewer, kinds)
    prepared = None
    if scope.kinds:
        query = Query(text, scope, filters, limits.max_search_words)
        prepared = await ctx.search.prepare(query)
    athlete = ctx.viewer.athlete_id is not None
    personal = athlete and bool({"COACH", "PROGRAM"} & set(scope.kinds))
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


async def readable(ctx: Context, hits: list[Hit]) -> list[bool]:
    """Whether each hit passes the read rule of node(id:) now. The projection lags the
    records by milliseconds: an athlete may have stopped looking for a coach, or left the
    viewer, since its document was written. Coaches, programs and skills are public."""
    ids = [h.id for h in hits if h.kind == "ATHLETE"]
    visible: set[int] = set()
    for found in await ctx.loaders.athlete_by_id.load_many(ids):
        if found is not None and await queries.access_to(ctx, found) is not AthleteAccess.NONE:
            visible.add(found.id)
    return [h.kind != "ATHLETE" or h.id in visible for h in hits]


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
