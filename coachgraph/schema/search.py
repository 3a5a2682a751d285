"""The search query of API.md: kinds, filters, facets, highlights and cursor pagination."""

from __future__ import annotations

import enum
from typing import Annotated

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from coachgraph.ids import encode_cursor
from coachgraph.resolvers import search as search_resolvers
from coachgraph.resolvers.search import Totals

from .info import Info
from .relay import PageInfo, page_info
from .types import Athlete, Coach, Program, Skill


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
    totals: strawberry.Private[Totals]

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


_TYPES = {"COACH": Coach, "ATHLETE": Athlete, "PROGRAM": Program, "SKILL": Skill}


async def search_field(
    info: Info,
    query: str,
    kinds: list[SearchKind] | None,
    filter: SearchFilter | None,
    first: int | None,
    after: str | None,
) -> SearchConnection:
    f = filter or SearchFilter()
    ctx = info.context
    filters = search_resolvers.filters(
        ctx,
        sports=f.sports,
        cities=f.cities,
        min_level=f.min_level,
        max_level=f.max_level,
        skill_ids=f.skill_ids,
    )
    wanted = _selected(info.selected_fields[0].selections)
    found = await search_resolvers.search(
        ctx,
        text=query,
        kinds=[k.value for k in kinds] if kinds else None,
        filters=filters,
        first=first,
        after=after,
        count="totalCount" in wanted,
        facets=bool(wanted & {"facets", "facetsExact"}),
    )
    edges = [
        SearchEdge(
            cursor=encode_cursor(position),
            node=_TYPES[hit.kind].from_record(record),  # type: ignore[attr-defined]
            score=hit.score,
            highlight=hit.highlight,
        )
        for position, hit, record in found.rows
    ]
    return SearchConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], found.has_next, after),
        totals=found.totals,
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
