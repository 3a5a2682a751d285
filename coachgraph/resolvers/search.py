"""Search: the viewer's scope (API.md), validated input, the search backend, and personal
ranking for athletes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from coachgraph.errors import InvalidInput
from coachgraph.resolvers import queries, validate
from coachgraph.resolvers.context import Context
from coachgraph.resolvers.loaders import ByKeyLoader
from coachgraph.resolvers.policy import AthleteAccess, search_scope
from coachgraph.search.model import (
    FACET_FIELDS,
    FacetCounts,
    Filters,
    Hit,
    Prepared,
    SearchIndex,
    SearchQuery,
)
from coachgraph.stores.records import AthleteRecord, CoachRecord, ProgramRecord, SkillRecord

SearchRecord = CoachRecord | AthleteRecord | ProgramRecord | SkillRecord


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


class Totals:
    """The count and the facets of one search, each asked of the backend at most once: early
    (beside the page) when selected, else on first use."""

    def __init__(self, search: SearchIndex, prepared: Prepared | None) -> None:
        self.search, self.prepared = search, prepared
        self.dropped = 0  # matches of the page the viewer may no longer see
        self._count: asyncio.Future[int] | None = None
        self._facets: asyncio.Future[FacetCounts] | None = None

    async def _none(self) -> int:
        return 0

    def count(self) -> asyncio.Future[int]:
        if self._count is None:
            self._count = asyncio.ensure_future(
                self._none() if self.prepared is None else self.search.count(self.prepared)
            )
        return self._count

    def facets(self) -> asyncio.Future[FacetCounts]:
        if self._facets is None:
            self._facets = asyncio.ensure_future(self._facet_counts())
        return self._facets

    async def _facet_counts(self) -> FacetCounts:
        if self.prepared is None:
            return FacetCounts({field: [] for field in FACET_FIELDS}, exact=True)
        return await self.search.facets(self.prepared)

    async def cancel(self) -> None:
        """Stop the count and facets, and wait until they have: each holds a pooled
        connection until its query is cancelled on the server and the connection released."""
        started = [f for f in (self._count, self._facets) if f is not None]
        for future in started:
            future.cancel()
        await asyncio.gather(*started, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Found:
    """A page of results the viewer may see now: (position in the index's results, hit,
    record) each; the count and facets of the whole search in `totals`."""

    rows: list[tuple[int, Hit, SearchRecord]]
    has_next: bool
    totals: Totals


def filters(
    ctx: Context,
    *,
    sports: list[str] | None,
    cities: list[str] | None,
    min_level: int | None,
    max_level: int | None,
    skill_ids: Sequence[str] | None,
) -> Filters:
    """The search filter of API.md: sports in lower case, skill ids decoded."""
    limit = ctx.settings.limits.max_list_input
    return Filters(
        sports=[s.strip().lower() for s in sports] if sports is not None else None,
        cities=cities,
        min_level=min_level,
        max_level=max_level,
        skill_ids=(
            validate.ids(skill_ids, "Skill", field="filter.skillIds", limit=limit)
            if skill_ids is not None
            else None
        ),
    )


async def search(
    ctx: Context,
    *,
    text: str,
    kinds: list[str] | None,
    filters: Filters,
    first: int | None,
    after: str | None,
    count: bool,
    facets: bool,
) -> Found:
    """One page of a search; the count and facets, when asked for (`count`, `facets`), run
    beside it (each on its own connection), else when first read from `totals`."""
    planned = await plan(ctx, text=text, kinds=kinds, filters=filters, first=first, after=after)
    totals = Totals(ctx.search, planned.prepared)
    if planned.prepared is not None:
        if count:
            totals.count()
        if facets:
            totals.facets()
    try:
        found = await page(ctx, planned)
        records = await _records(ctx, found.hits)
        visible = await readable(ctx, found.hits)
    except BaseException:
        await totals.cancel()
        raise
    # a record deleted, or no longer visible, since the projection last ran is dropped; the
    # positions stay those in the index's results, so the next page neither repeats nor skips
    rows = [
        (found.offset + i + 1, hit, record)
        for i, (hit, record, ok) in enumerate(zip(found.hits, records, visible, strict=True))
        if record is not None and ok
    ]
    totals.dropped = len(found.hits) - len(rows)
    return Found(rows, found.has_next, totals)


def _loader(ctx: Context, kind: str) -> ByKeyLoader[int, Any]:
    loaders = ctx.loaders
    if kind == "COACH":
        return loaders.coach_by_id
    if kind == "ATHLETE":
        return loaders.athlete_by_id
    if kind == "PROGRAM":
        return loaders.program_by_id
    return loaders.skill_by_id


async def _records(ctx: Context, hits: list[Hit]) -> list[SearchRecord | None]:
    """Each hit's record (None: gone), loaded one statement per kind."""
    by_kind: dict[str, list[int]] = {}
    for h in hits:
        by_kind.setdefault(h.kind, []).append(h.id)
    loaded = await asyncio.gather(
        *(_loader(ctx, kind).load_many(ids) for kind, ids in by_kind.items())
    )
    records = {
        kind: dict(zip(ids, rows, strict=True))
        for (kind, ids), rows in zip(by_kind.items(), loaded, strict=True)
    }
    return [records[h.kind][h.id] for h in hits]


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
        query = SearchQuery(text, scope, filters, limits.max_search_words)
        prepared = await ctx.search.prepare(query)
    athlete = ctx.viewer.athlete_id is not None
    # a browse keeps its order by name (API.md): nothing to blend with a graph fit
    browse = not text.strip()
    personal = athlete and not browse and bool({"COACH", "PROGRAM"} & set(scope.kinds))
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
    best = max(h.score or 0.0 for h in hits) or 1.0
    blended = [
        replace(h, score=(1 - weight) * (h.score or 0.0) / best + weight * fit.share(h.kind, h.id))
        for h in hits
    ]
    # sorted() is stable: equal blends keep the backend's order
    return sorted(blended, key=lambda h: -(h.score or 0.0))
