"""The search query of API.md: kinds, filters, facets, highlights and cursor pagination."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Any

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from coachgraph.ids import encode_cursor
from coachgraph.resolvers import search as search_resolvers
from coachgraph.resolvers import validate
from coachgraph.resolvers.loaders import ByKeyLoader, Loaders
from coachgraph.search.model import (
    FACET_FIELDS,
    FacetCounts,
    Filters,
    Hit,
    Prepared,
    SearchIndex,
)

from .relay import PageInfo, page_info
from .types import Athlete, Coach, Info, Program, Skill


@strawberry.enum
class SearchKind(enum.Enum):
    COACH = "COACH"
    ATHLETE = "ATHLETE"
    PROGRAM = "PROGRAM"
    SKILL = "SKILL"


@strawberry.input
class SearchFilter:
    sports: list[str] | None = None
    cities: list[str] | None = None
    min_level: int | None = None
    max_level: int | None = None
    skill_ids: list[strawberry.ID] | None = None


SearchResult = Annotated[Coach | Athlete | Program | Skill, strawberry.union("SearchResult")]


@strawberry.type
class SearchEdge:
    cursor: str
    node: SearchResult
    score: float | None
    highlight: str | None


@strawberry.type
class FacetValue:
    value: str
    count: int


@strawberry.type
class Facet:
    field: str
    values: list[FacetValue]


class _Totals:
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


@strawberry.type
class SearchConnection:
    edges: list[SearchEdge]
    page_info: PageInfo
    totals: strawberry.Private[_Totals]

    @strawberry.field(
        description="Every match the viewer may see (counted only when asked). The index "
        "lags the records by milliseconds: matches this page dropped (no longer visible, or "
        "deleted) are not counted; such matches on other pages are until the index catches up."
    )
    async def total_count(self) -> int:
        return max(0, await self.totals.count() - self.totals.dropped)

    @strawberry.field(description="Counts of the matches by sport, city and level.")
    async def facets(self) -> list[Facet]:
        counts = await self.totals.facets()
        return [
            Facet(field=f, values=[FacetValue(value=v, count=n) for v, n in values])
            for f, values in counts.values.items()
        ]

    @strawberry.field(
        description="Whether the facets counted every match. A very broad query (past "
        "`search_facet_limit` matches, Postgres backend) has them counted over the first "
        "ones the index returns."
    )
    async def facets_exact(self) -> bool:
        return (await self.totals.facets()).exact


def _loader(loaders: Loaders, kind: str) -> ByKeyLoader[int, Any]:
    if kind == "COACH":
        return loaders.coach_by_id
    if kind == "ATHLETE":
        return loaders.athlete_by_id
    if kind == "PROGRAM":
        return loaders.program_by_id
    return loaders.skill_by_id


async def _nodes(info: Info, hits: list[Hit]) -> list[Coach | Athlete | Program | Skill | None]:
    """Each hit's object, loaded one statement per kind."""
    loaders = info.context.loaders
    by_kind: dict[str, list[int]] = {}
    for h in hits:
        by_kind.setdefault(h.kind, []).append(h.id)
    loaded = dict(
        zip(
            by_kind,
            await asyncio.gather(
                *(_loader(loaders, kind).load_many(ids) for kind, ids in by_kind.items())
            ),
            strict=True,
        )
    )
    present = {"COACH": Coach, "ATHLETE": Athlete, "PROGRAM": Program, "SKILL": Skill}
    records = {k: dict(zip(by_kind[k], rows, strict=True)) for k, rows in loaded.items()}
    out: list[Coach | Athlete | Program | Skill | None] = []
    for h in hits:
        record = records[h.kind][h.id]
        out.append(None if record is None else present[h.kind].from_record(record))  # type: ignore[attr-defined]
    return out


async def search_field(
    info: Info,
    query: str,
    kinds: list[SearchKind] | None,
    filter: SearchFilter | None,
    first: int | None,
    after: str | None,
) -> SearchConnection:
    f = filter or SearchFilter()
    limit = info.context.settings.limits.max_list_input
    filters = Filters(
        sports=[s.strip().lower() for s in f.sports] if f.sports is not None else None,
        cities=f.cities,
        min_level=f.min_level,
        max_level=f.max_level,
        skill_ids=(
            validate.ids(f.skill_ids, "Skill", field="filter.skillIds", limit=limit)
            if f.skill_ids is not None
            else None
        ),
    )
    ctx = info.context
    planned = await search_resolvers.plan(
        ctx,
        text=query,
        kinds=[k.value for k in kinds] if kinds else None,
        filters=filters,
        first=first,
        after=after,
    )
    # the count and facets, when selected, run beside the page (each on its own connection)
    totals = _Totals(ctx.search, planned.prepared)
    if planned.prepared is not None:
        wanted = _selected(info.selected_fields[0].selections)
        if "totalCount" in wanted:
            totals.count()
        if wanted & {"facets", "facetsExact"}:
            totals.facets()
    try:
        found = await search_resolvers.page(ctx, planned)
        nodes = await _nodes(info, found.hits)
        readable = await search_resolvers.readable(ctx, found.hits)
    except BaseException:
        await totals.cancel()
        raise
    # a record deleted, or no longer visible, since the projection last ran is dropped; the
    # cursors stay positions in the index's results, so the next page neither repeats nor skips
    edges = [
        SearchEdge(
            cursor=encode_cursor(found.offset + i + 1),
            node=node,
            score=hit.score,
            highlight=hit.highlight,
        )
        for i, (hit, node, ok) in enumerate(zip(found.hits, nodes, readable, strict=True))
        if node is not None and ok
    ]
    totals.dropped = len(found.hits) - len(edges)
    return SearchConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], found.has_next, after),
        totals=totals,
    )


def _selected(selections: list[Selection]) -> set[str]:
    """The field names selected at this level, through fragments."""
    names: set[str] = set()
    for s in selections:
        if isinstance(s, SelectedField):
            names.add(s.name)
        else:
            names |= _selected(s.selections)
    return names
