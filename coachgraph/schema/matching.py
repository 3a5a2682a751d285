"""Matches and recommendations, each with the reasons behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import strawberry

from coachgraph.errors import NotFound, PermissionDenied
from coachgraph.graph.recommend import Match, Reasons
from coachgraph.ids import decode_id
from coachgraph.resolvers import matching

from .info import Info
from .types import Athlete, Coach, Program, Skill, athlete_by_id, coach_by_id, program_by_id


async def _skills(info: Info, ids: tuple[int, ...] | list[int]) -> list[Skill]:
    rows = await info.context.loaders.skill_by_id.load_many(list(ids))
    return [Skill.from_record(r) for r in rows if r is not None]


@strawberry.type(description="Why a match was suggested.")
class MatchReasons:
    shared_skills: list[Skill] = strawberry.field(
        description="Skills the athlete practises that the match works on."
    )
    goals_covered: list[Skill] = strawberry.field(
        description="The athlete's goals the match covers."
    )
    similar_athletes: int
    summary: str


@strawberry.type
class CoachMatch:
    coach: Coach
    score: float
    reasons: MatchReasons


@strawberry.type
class AthleteMatch:
    athlete: Athlete
    score: float
    reasons: MatchReasons


@strawberry.type
class ProgramRecommendation:
    program: Program
    score: float
    reasons: MatchReasons


T = TypeVar("T")
M = TypeVar("M")


async def _present(
    info: Info,
    matches: list[Match],
    load: Callable[[Info, int], Awaitable[T]],
    make: Callable[[T, float, MatchReasons], M],
) -> list[M]:
    """Matches with their subjects and reasons' skills loaded up front, in two batched
    statements, so every field below them resolves without awaiting. The graph is a projection
    that lags the records: a subject gone from them, or one the viewer may no longer read, is
    left out (as search leaves out such hits) rather than failing the whole list."""
    skill_ids = sorted(
        {s for m in matches for s in m.reasons.shared_skills + m.reasons.goals_covered}
    )

    async def readable(raw_id: int) -> T | None:
        try:
            return await load(info, raw_id)
        except (NotFound, PermissionDenied):
            return None

    subjects, skills = await asyncio.gather(
        asyncio.gather(*(readable(m.id) for m in matches)), _skills(info, skill_ids)
    )
    by_id = {skill.raw_id: skill for skill in skills}

    def reasons(r: Reasons) -> MatchReasons:
        return MatchReasons(
            shared_skills=[by_id[s] for s in r.shared_skills if s in by_id],
            goals_covered=[by_id[s] for s in r.goals_covered if s in by_id],
            similar_athletes=r.similar_athletes,
            summary=r.summary,
        )

    return [
        make(subject, m.score, reasons(m.reasons))
        for subject, m in zip(subjects, matches, strict=True)
        if subject is not None
    ]


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


async def present_coach_matches(info: Info, matches: list[Match]) -> list[CoachMatch]:
    """Coach matches as matchCoaches and the matchUpdates subscription return them."""
    return await _present(info, matches, coach_by_id, _coach_match)


def _coach_match(coach: Coach, score: float, reasons: MatchReasons) -> CoachMatch:
    return CoachMatch(coach=coach, score=score, reasons=reasons)


def _athlete_match(athlete: Athlete, score: float, reasons: MatchReasons) -> AthleteMatch:
    return AthleteMatch(athlete=athlete, score=score, reasons=reasons)


def _recommendation(program: Program, score: float, reasons: MatchReasons) -> ProgramRecommendation:
    return ProgramRecommendation(program=program, score=score, reasons=reasons)


@strawberry.type
class MatchingQuery:
    @strawberry.field(description="Coaches for an athlete, best first, with reasons.")
    async def match_coaches(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 10
    ) -> list[CoachMatch]:
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        matches = await matching.match_coaches(info.context, raw_id, first)
        return await present_coach_matches(info, matches)

    @strawberry.field(description="Athletes looking for a coach that this coach would serve best.")
    async def match_athletes(
        self, info: Info, coach_id: strawberry.ID, first: int | None = 10
    ) -> list[AthleteMatch]:
        raw_id = decode_id(coach_id, "Coach", field="coachId")
        matches = await matching.match_athletes(info.context, raw_id, first)
        return await _present(info, matches, athlete_by_id, _athlete_match)

    @strawberry.field(description="Programs that develop the athlete's goals at its level.")
    async def recommend_programs(
        self, info: Info, athlete_id: strawberry.ID, first: int | None = 5
    ) -> list[ProgramRecommendation]:
        raw_id = decode_id(athlete_id, "Athlete", field="athleteId")
        matches = await matching.recommend_programs(info.context, raw_id, first)
        return await _present(info, matches, program_by_id, _recommendation)

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
