"""The Mutation root of API.md: each returns <Thing> | ValidationError | NotFoundError | ..."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry

from coachgraph.ids import decode_id
from coachgraph.resolvers import mutations, validate
from coachgraph.resolvers.context import Context
from coachgraph.stores.records import AthleteRecord

from .coaching import CoachingMutation
from .errors import ErrorResult, as_result
from .info import Info
from .inputs import (
    CreateAthleteInput,
    CreateCoachInput,
    CreateProgramInput,
    CreateSkillInput,
    ScheduleSessionInput,
    UpdateAthleteInput,
    UpdateCoachInput,
)
from .lifecycle import LifecycleMutation
from .live import LiveMutation
from .media import MediaMutation
from .types import Athlete, Coach, Enrollment, Program, Skill, TrainingSession

CoachResult = Annotated[Coach | ErrorResult, strawberry.union("CoachResult")]
AthleteResult = Annotated[Athlete | ErrorResult, strawberry.union("AthleteResult")]
SkillResult = Annotated[Skill | ErrorResult, strawberry.union("SkillResult")]
ProgramResult = Annotated[Program | ErrorResult, strawberry.union("ProgramResult")]
EnrollmentResult = Annotated[Enrollment | ErrorResult, strawberry.union("EnrollmentResult")]
TrainingSessionResult = Annotated[
    TrainingSession | ErrorResult, strawberry.union("TrainingSessionResult")
]


def _ids(info: Info, values: list[strawberry.ID], expected: str, field: str) -> list[int]:
    limit = info.context.settings.limits.max_list_input
    return validate.ids(values, expected, field=field, limit=limit)


def _coach_id(value: strawberry.ID) -> int:
    return decode_id(value, "Coach", field="coachId")


def _athlete_id(value: strawberry.ID) -> int:
    return decode_id(value, "Athlete", field="athleteId")


def _skill_id(value: strawberry.ID) -> int:
    return decode_id(value, "Skill", field="skillId")


def _program_id(value: strawberry.ID) -> int:
    return decode_id(value, "Program", field="programId")


async def _coaching(
    info: Info,
    change: Callable[[Context, int, int], Awaitable[AthleteRecord]],
    coach_id: strawberry.ID,
    athlete_id: strawberry.ID,
) -> Athlete | ErrorResult:
    """Start or end a coaching relationship; the athlete as it is afterwards."""
    return await as_result(
        lambda: change(info.context, _coach_id(coach_id), _athlete_id(athlete_id)),
        Athlete.from_record,
    )


async def _move_session(
    info: Info, id: strawberry.ID, status: str
) -> TrainingSession | ErrorResult:
    return await as_result(
        lambda: mutations.move_session(info.context, decode_id(id, "TrainingSession"), status),
        TrainingSession.from_record,
    )


@strawberry.type
class Mutation(MediaMutation, LiveMutation, CoachingMutation, LifecycleMutation):
    @strawberry.mutation
    async def create_coach(self, info: Info, input: CreateCoachInput) -> CoachResult:
        return await as_result(
            lambda: mutations.create_coach(info.context, input.fields()), Coach.from_record
        )

    @strawberry.mutation
    async def update_coach(
        self, info: Info, id: strawberry.ID, input: UpdateCoachInput
    ) -> CoachResult:
        return await as_result(
            lambda: mutations.update_coach(info.context, decode_id(id, "Coach"), input.fields()),
            Coach.from_record,
        )

    @strawberry.mutation
    async def create_athlete(self, info: Info, input: CreateAthleteInput) -> AthleteResult:
        return await as_result(
            lambda: mutations.create_athlete(info.context, input.fields()), Athlete.from_record
        )

    @strawberry.mutation
    async def update_athlete(
        self, info: Info, id: strawberry.ID, input: UpdateAthleteInput
    ) -> AthleteResult:
        return await as_result(
            lambda: mutations.update_athlete(
                info.context, decode_id(id, "Athlete"), input.fields()
            ),
            Athlete.from_record,
        )

    @strawberry.mutation
    async def create_skill(self, info: Info, input: CreateSkillInput) -> SkillResult:
        return await as_result(
            lambda: mutations.create_skill(
                info.context,
                slug=input.slug,
                name=input.name,
                sport=input.sport,
                prerequisite_ids=_ids(info, input.prerequisite_ids, "Skill", "prerequisiteIds"),
            ),
            Skill.from_record,
        )

    @strawberry.mutation
    async def set_coach_skill(
        self, info: Info, coach_id: strawberry.ID, skill_id: strawberry.ID, level: int
    ) -> CoachResult:
        return await as_result(
            lambda: mutations.set_coach_skill(
                info.context, _coach_id(coach_id), _skill_id(skill_id), level
            ),
            Coach.from_record,
        )

    @strawberry.mutation
    async def set_athlete_skill(
        self, info: Info, athlete_id: strawberry.ID, skill_id: strawberry.ID, level: int
    ) -> AthleteResult:
        return await as_result(
            lambda: mutations.set_athlete_skill(
                info.context, _athlete_id(athlete_id), _skill_id(skill_id), level
            ),
            Athlete.from_record,
        )

    @strawberry.mutation(description="Replace the athlete's goals.")
    async def set_athlete_goals(
        self, info: Info, athlete_id: strawberry.ID, skill_ids: list[strawberry.ID]
    ) -> AthleteResult:
        return await as_result(
            lambda: mutations.set_athlete_goals(
                info.context,
                _athlete_id(athlete_id),
                _ids(info, skill_ids, "Skill", "skillIds"),
            ),
            Athlete.from_record,
        )

    @strawberry.mutation
    async def create_program(self, info: Info, input: CreateProgramInput) -> ProgramResult:
        return await as_result(
            lambda: mutations.create_program(
                info.context,
                coach_id=_coach_id(input.coach_id),
                title=input.title,
                sport=input.sport,
                level=input.level,
                duration_weeks=input.duration_weeks,
                skill_ids=_ids(info, input.skill_ids, "Skill", "skillIds"),
                description=input.description,
            ),
            Program.from_record,
        )

    @strawberry.mutation
    async def enroll(
        self, info: Info, athlete_id: strawberry.ID, program_id: strawberry.ID
    ) -> EnrollmentResult:
        return await as_result(
            lambda: mutations.enroll(
                info.context, _athlete_id(athlete_id), _program_id(program_id)
            ),
            Enrollment.from_record,
        )

    @strawberry.mutation(description="ConflictError when the coach is at capacity.")
    async def assign_coach(
        self, info: Info, coach_id: strawberry.ID, athlete_id: strawberry.ID
    ) -> AthleteResult:
        return await _coaching(info, mutations.assign_coach, coach_id, athlete_id)

    @strawberry.mutation(description="End a coaching relationship; frees a place.")
    async def unassign_coach(
        self, info: Info, coach_id: strawberry.ID, athlete_id: strawberry.ID
    ) -> AthleteResult:
        return await _coaching(info, mutations.unassign_coach, coach_id, athlete_id)

    @strawberry.mutation
    async def schedule_session(
        self, info: Info, input: ScheduleSessionInput
    ) -> TrainingSessionResult:
        return await as_result(
            lambda: mutations.schedule_session(
                info.context,
                coach_id=_coach_id(input.coach_id),
                athlete_id=_athlete_id(input.athlete_id),
                program_id=(_program_id(input.program_id) if input.program_id else None),
                scheduled_at=input.scheduled_at,
                notes=input.notes,
            ),
            TrainingSession.from_record,
        )

    @strawberry.mutation
    async def start_session(self, info: Info, id: strawberry.ID) -> TrainingSessionResult:
        return await _move_session(info, id, "LIVE")

    @strawberry.mutation
    async def end_session(self, info: Info, id: strawberry.ID) -> TrainingSessionResult:
        return await _move_session(info, id, "COMPLETED")
