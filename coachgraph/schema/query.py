"""The Query root of API.md."""

from __future__ import annotations

import strawberry

from coachgraph.errors import InvalidInput
from coachgraph.ids import decode_id, from_global_id
from coachgraph.resolvers import media, queries

from .coaching import CoachingQuery, questionnaire_node
from .info import Info
from .inputs import AthleteFilter, CoachFilter, ProgramFilter
from .lifecycle import LifecycleQuery
from .matching import MatchingQuery
from .media import Media
from .node import Node
from .relay import Connection, connection
from .search import SearchConnection, SearchFilter, SearchKind, search_field
from .types import (
    Athlete,
    Coach,
    Program,
    Skill,
    TrainingSession,
    ViewerType,
    row_id,
)


async def resolve_node(info: Info, global_id: str) -> Node:
    """Any object by its global ID, under the same policy as its own fields."""
    ctx = info.context
    type_name, raw_id = from_global_id(global_id)
    if type_name == "Coach":
        return Coach.from_record(await queries.coach(ctx, raw_id))
    if type_name == "Athlete":
        return Athlete.from_record(await queries.athlete(ctx, raw_id))
    if type_name == "Skill":
        return Skill.from_record(await queries.skill(ctx, raw_id))
    if type_name == "Program":
        return Program.from_record(await queries.program(ctx, raw_id))
    if type_name == "TrainingSession":
        return TrainingSession.from_record(await queries.session(ctx, raw_id))
    if type_name == "Media":
        return Media.from_record(await media.get(ctx, raw_id))
    if type_name == "Questionnaire":
        return await questionnaire_node(info, raw_id)
    raise InvalidInput(f"{type_name} cannot be fetched with node yet", field="id")


@strawberry.type
class Query(MatchingQuery, CoachingQuery, LifecycleQuery):
    @strawberry.field(description="Any object by its global ID.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    @strawberry.field(description="Who is asking; null when anonymous.")
    def viewer(self, info: Info) -> ViewerType | None:
        v = info.context.viewer
        return None if v.role is None else ViewerType.of(v.role, v.coach_id, v.athlete_id)

    @strawberry.field
    async def coaches(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        filter: CoachFilter | None = None,
    ) -> Connection[Coach]:
        f = filter or CoachFilter()
        page, count = await queries.coaches_page(
            info.context,
            first,
            after,
            sport=f.sport,
            city=f.city,
            accepting=f.accepting_athletes,
        )
        # Program.coach and friends then find these coaches without another statement
        info.context.loaders.coach_by_id.prime_many({c.id: c for c in page.items})
        return connection(page, Coach.from_record, row_id, after=after, total=count)

    @strawberry.field(description="Athletes the viewer may see.")
    async def athletes(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        filter: AthleteFilter | None = None,
    ) -> Connection[Athlete]:
        f = filter or AthleteFilter()
        page, count = await queries.athletes_page(
            info.context,
            first,
            after,
            sport=f.sport,
            city=f.city,
            looking_for_coach=f.looking_for_coach,
        )
        return connection(page, Athlete.from_record, row_id, after=after, total=count)

    @strawberry.field(description="Typo-tolerant search over what the viewer may see.")
    async def search(
        self,
        info: Info,
        query: str,
        kinds: list[SearchKind] | None = None,
        filter: SearchFilter | None = None,
        first: int | None = 10,
        after: str | None = None,
    ) -> SearchConnection:
        return await search_field(info, query, kinds, filter, first, after)

    @strawberry.field
    async def skills(
        self, info: Info, first: int | None = 50, after: str | None = None, sport: str | None = None
    ) -> Connection[Skill]:
        page, count = await queries.skills_page(info.context, first, after, sport=sport)
        return connection(page, Skill.from_record, row_id, after=after, total=count)

    @strawberry.field
    async def programs(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        filter: ProgramFilter | None = None,
    ) -> Connection[Program]:
        f = filter or ProgramFilter()
        coach_id = decode_id(f.coach_id, "Coach", field="coachId") if f.coach_id else None
        page, count = await queries.programs_page(
            info.context, first, after, sport=f.sport, coach_id=coach_id, max_level=f.max_level
        )
        return connection(page, Program.from_record, row_id, after=after, total=count)
