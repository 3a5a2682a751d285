"""Input objects of API.md."""

from __future__ import annotations

from datetime import datetime

import strawberry

from coachgraph.resolvers.mutations import AthleteFields, CoachFields


def _given(obj: object, names: tuple[str, ...]) -> dict[str, object]:
    """The fields the client actually sent (UNSET ones are left out)."""
    return {n: v for n in names if (v := getattr(obj, n)) is not strawberry.UNSET}


_COACH = ("name", "sports", "timezone", "capacity", "city", "headline", "bio")
_ATHLETE = ("name", "sport", "timezone", "level", "city", "looking_for_coach")


@strawberry.input
class CreateCoachInput:
    name: str
    sports: list[str]
    timezone: str
    capacity: int
    city: str | None = None
    headline: str | None = None
    bio: str | None = None

    def fields(self) -> CoachFields:
        return CoachFields(**_given(self, _COACH))  # type: ignore[arg-type]


@strawberry.input
class UpdateCoachInput:
    name: str | None = strawberry.UNSET
    sports: list[str] | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    capacity: int | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    headline: str | None = strawberry.UNSET
    bio: str | None = strawberry.UNSET

    def fields(self) -> CoachFields:
        return CoachFields(**_given(self, _COACH))  # type: ignore[arg-type]


@strawberry.input
class CreateAthleteInput:
    name: str
    sport: str
    timezone: str
    level: int
    city: str | None = None
    looking_for_coach: bool = False

    def fields(self) -> AthleteFields:
        return AthleteFields(**_given(self, _ATHLETE))  # type: ignore[arg-type]


@strawberry.input
class UpdateAthleteInput:
    name: str | None = strawberry.UNSET
    sport: str | None = strawberry.UNSET
    timezone: str | None = strawberry.UNSET
    level: int | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    looking_for_coach: bool | None = strawberry.UNSET

    def fields(self) -> AthleteFields:
        return AthleteFields(**_given(self, _ATHLETE))  # type: ignore[arg-type]


@strawberry.input
class CreateSkillInput:
    slug: str
    name: str
    sport: str
    prerequisite_ids: list[strawberry.ID] = strawberry.field(default_factory=list)


@strawberry.input
class CreateProgramInput:
    coach_id: strawberry.ID
    title: str
    sport: str
    level: int
    duration_weeks: int
    skill_ids: list[strawberry.ID]
    description: str | None = None


@strawberry.input
class ScheduleSessionInput:
    coach_id: strawberry.ID
    athlete_id: strawberry.ID
    scheduled_at: datetime
    program_id: strawberry.ID | None = None
    notes: str | None = None


@strawberry.input
class CoachFilter:
    sport: str | None = None
    city: str | None = None
    accepting_athletes: bool | None = None


@strawberry.input
class AthleteFilter:
    sport: str | None = None
    city: str | None = None
    looking_for_coach: bool | None = None


@strawberry.input
class ProgramFilter:
    sport: str | None = None
    coach_id: strawberry.ID | None = None
    max_level: int | None = None
