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
from coachgraph.search.model import FACET_FIELDS, FacetCounts, Filters, Hit, Prepared

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


@strawberry.type
class SearchConnection:
    edges: list[SearchEdge]
    page_info: PageInfo
    prepared: strawberry.Private[Prepared | None]
    # started beside the page when selected; facets and facetsExact share one call
    count: strawberry.Private[asyncio.Future[int] | None] = None
    facet_counts: strawberry.Private[asyncio.Future[FacetCounts] | None] = None

    @strawberry.field(description="Every match the viewer may see (counted only when asked).")
    async def total_count(self, info: Info) -> int:
        if self.prepared is None:
            return 0
        if self.count is None:
            self.count = asyncio.ensure_future(info.context.search.count(self.prepared))
        return await self.count

    async def _facets(self, info: Info) -> FacetCounts:
        if self.prepared is None:
            return FacetCounts({field: [] for field in FACET_FIELDS}, exact=True)
        if self.facet_counts is None:
            self.facet_counts = asyncio.ensure_future(info.context.search.facets(self.prepared))
        return await self.facet_counts

    @strawberry.field(description="Counts of the matches by sport, city and level.")
    async def facets(self, info: Info) -> list[Facet]:
        counts = await self._facets(info)
        return [
            Facet(field=f, values=[FacetValue(value=v, count=n) for v, n in values])
            for f, values in counts.values.items()
        ]

    @strawberry.field(
        description="Whether the facets counted every match. A very broad query (past "
        "`search_facet_limit` matches, Postgres backend) has them counted over the first "
        "ones the index returns."
    )
    async def facets_exact(self, info: Info) -> bool:
        return (await self._facets(info)).exact


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
    wanted = _selected(info.selected_fields[0].selections) if planned.prepared else set()
    count = (
        asyncio.ensure_future(ctx.search.count(planned.prepared))
        if planned.prepared is not None and "totalCount" in wanted
        else None
    )
    facet_counts = (
        asyncio.ensure_future(ctx.search.facets(planned.prepared))
        if planned.prepared is not None and wanted & {"facets", "facetsExact"}
        else None
    )
    try:
        found = await search_resolvers.page(ctx, planned)
    except BaseException:
        for task in (count, facet_counts):
            if task is not None:
                task.cancel()
        raise
    nodes = await _nodes(info, found.hits)
    edges = [
        SearchEdge(
            cursor=encode_cursor(found.offset + i + 1),
            node=node,
            score=hit.score,
            highlight=hit.highlight,
        )
        for i, (hit, node) in enumerate(zip(found.hits, nodes, strict=True))
        if node is not None  # a record deleted since the projection last ran
    ]
    return SearchConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], found.has_next, after),
        prepared=found.prepared,
        count=count,
        facet_counts=facet_counts,
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
