"""Matches and recommendations, each with the reasons behind it."""

from __future__ import annotations

import strawberry

from coachgraph.graph.recommend import Match, Reasons
from coachgraph.ids import decode_id
from coachgraph.resolvers import matching, queries

from .types import Athlete, Coach, Info, Program, Skill


async def _skills(info: Info, ids: tuple[int, ...] | list[int]) -> list[Skill]:
    rows = await info.context.loaders.skill_by_id.load_many(list(ids))
    return [Skill.from_record(r) for r in rows if r is not None]


@strawberry.type(description="Why a match was suggested.")
class MatchReasons:
    similar_athletes: int
    summary: str
    reasons: strawberry.Private[Reasons]

    @strawberry.field(description="Skills the athlete practises that the match works on.")
    async def shared_skills(self, info: Info) -> list[Skill]:
        return await _skills(info, self.reasons.shared_skills)

    @strawberry.field(description="The athlete's goals the match covers.")
    async def goals_covered(self, info: Info) -> list[Skill]:
        return await _skills(info, self.reasons.goals_covered)

    @classmethod
    def of(cls, r: Reasons) -> MatchReasons:
        return cls(similar_athletes=r.similar_athletes, summary=r.summary, reasons=r)


@strawberry.type
class CoachMatch:
    score: float
    reasons: MatchReasons
    coach_id: strawberry.Private[int]

    @strawberry.field
    async def coach(self, info: Info) -> Coach:
        return Coach.from_record(await queries.coach(info.context, self.coach_id))


@strawberry.type
class AthleteMatch:
    score: float
    reasons: MatchReasons
    athlete_id: strawberry.Private[int]

    @strawberry.field
    async def athlete(self, info: Info) -> Athlete:
        return Athlete.from_record(await queries.athlete(info.context, self.athlete_id))


@strawberry.type
class ProgramRecommendation:
    score: float
    reasons: MatchReasons
    program_id: strawberry.Private[int]

    @strawberry.field
    async def program(self, info: Info) -> Program:
        return Program.from_record(await queries.program(info.context, self.program_id))


@strawberry.type(description="Skills still to learn, in prerequisite order, target last.")
class SkillPath:
    skill_ids: strawberry.Private[list[int]]
    program_ids: strawberry.Private[list[int]]

    @strawberry.field
    async def skills(self, info: Info) -> list[Skill]:
        return await _skills(info, self.skill_ids)

    @strawberry.field(description="Programs that develop those skills, most of them first.")
    async def programs(self, info: Info) -> list[Program]:
        rows = await info.context.loaders.program_by_id.load_many(self.program_ids)
        return [Program.from_record(r) for r in rows if r is not None]


def _coach_match(m: Match) -> CoachMatch:
    return CoachMatch(score=m.score, reasons=MatchReasons.of(m.reasons), coach_id=m.id)


@strawberry.type
class MatchingQuery:
    @strawberry.field(description="Coaches for an athlete, best first, with reasons.")
    async def match_coaches(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 10
    ) -> list[CoachMatch]:
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        return [_coach_match(m) for m in await matching.match_coaches(info.context, raw_id, first)]

    @strawberry.field(description="Athletes looking for a coach that this coach would serve best.")
    async def match_athletes(
        self, info: Info, coach_id: strawberry.ID, first: int | None = 10
    ) -> list[AthleteMatch]:
        raw_id = decode_id(coach_id, "Coach", field="coachId")
        return [
            AthleteMatch(score=m.score, reasons=MatchReasons.of(m.reasons), athlete_id=m.id)
            for m in await matching.match_athletes(info.context, raw_id, first)
        ]

    @strawberry.field(description="Programs that develop the athlete's goals at its level.")
    async def recommend_programs(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 5
    ) -> list[ProgramRecommendation]:
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        return [
            ProgramRecommendation(
                score=m.score, reasons=MatchReasons.of(m.reasons), program_id=m.id
            )
            for m in await matching.recommend_programs(info.context, raw_id, first)
        ]

    @strawberry.field(description="What the athlete still has to learn to reach a skill.")
    async def skill_path(
        self, info: Info, athlete_id: strawberry.ID, target_skill_id: strawberry.ID
    ) -> SkillPath | None:
        found = await matching.skill_path(
            info.context,
            decode_id(athlete_id, "Athlete", field="athleteId"),
            decode_id(target_skill_id, "Skill", field="targetSkillId"),
        )
        if found is None:
            return None
        skills, programs = found
        return SkillPath(skill_ids=skills, program_ids=programs)
