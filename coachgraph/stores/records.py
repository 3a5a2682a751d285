"""Exact types the stores return; nothing here knows about GraphQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class Unset(enum.Enum):
    """The type of `UNSET`: a field left out of a change, as opposed to one set to null."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class CoachChanges:
    """The columns of a coach to change; UNSET ones stay as they are."""

    name: str | Unset = UNSET
    sports: list[str] | Unset = UNSET
    timezone: str | Unset = UNSET
    capacity: int | Unset = UNSET
    city: str | Unset | None = UNSET
    headline: str | Unset | None = UNSET
    bio: str | Unset | None = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class AthleteChanges:
    """The columns of an athlete to change; UNSET ones stay as they are."""

    name: str | Unset = UNSET
    sport: str | Unset = UNSET
    timezone: str | Unset = UNSET
    level: int | Unset = UNSET
    city: str | Unset | None = UNSET
    looking_for_coach: bool | Unset = UNSET


@dataclass(frozen=True, slots=True)
class CoachRecord:
    id: int
    name: str
    headline: str | None
    bio: str | None
    sports: list[str]
    city: str | None
    timezone: str
    capacity: int
    active_athlete_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AthleteRecord:
    id: int
    name: str
    sport: str
    city: str | None
    timezone: str
    level: int
    looking_for_coach: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SkillRecord:
    id: int
    slug: str
    name: str
    sport: str


@dataclass(frozen=True, slots=True)
class LeveledSkill:
    skill: SkillRecord
    level: int


@dataclass(frozen=True, slots=True)
class ProgramRecord:
    id: int
    coach_id: int
    title: str
    description: str | None
    sport: str
    level: int
    duration_weeks: int
    enrollment_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    athlete_id: int
    program_id: int
    status: str
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    coach_id: int
    athlete_id: int
    program_id: int | None
    status: str
    scheduled_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    notes: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; `total` when the query computed it."""

    items: list[T]
    has_next: bool
    total: int | None = None


@dataclass(frozen=True, slots=True)
class AthleteScope:
    """Which athletes a viewer may see, as data: an athlete is in scope when any grant that is
    set admits it. resolvers/policy.py decides a viewer's scope; each backend renders it (SQL
    in stores/sql.py, a filter in search/meili.py, a predicate in resolvers/policy.py).

    `everyone`, `athlete_id` (itself) and `coach_id` (the athletes it coaches now) grant the
    whole athlete; `looking_for_coach` grants the profile of athletes looking for a coach.
    No grant set: nobody."""

    everyone: bool = False
    looking_for_coach: bool = False
    athlete_id: int | None = None
    coach_id: int | None = None

    @property
    def nobody(self) -> bool:
        return self == AthleteScope()


@dataclass(frozen=True, slots=True)
class SessionScope:
    """Which training sessions a viewer may see or change, as data (rendered like
    AthleteScope): those of `coach_id` or of `athlete_id`, or all. With `current_coach`,
    a session of `coach_id` counts only while that coach still coaches its athlete."""

    everyone: bool = False
    coach_id: int | None = None
    athlete_id: int | None = None
    current_coach: bool = False

    @property
    def nobody(self) -> bool:
        return not self.everyone and self.coach_id is None and self.athlete_id is None


@dataclass(frozen=True, slots=True)
class MediaRecord:
    id: int
    owner_type: str
    owner_id: int
    kind: str
    content_type: str
    size_bytes: int
    status: str
    storage_key: str
    checksum: str | None
    created_at: datetime
