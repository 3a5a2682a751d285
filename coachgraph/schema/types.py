"""The object types of API.md. Plain attributes carry no resolver: only I/O fields are async."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from coachgraph.ids import to_global_id
from coachgraph.resolvers import queries
from coachgraph.resolvers.lifecycle import audited
from coachgraph.resolvers.loaders import StoreLoader
from coachgraph.resolvers.policy import Role
from coachgraph.stores.metrics import Sample
from coachgraph.stores.records import (
    AthleteRecord,
    CoachRecord,
    EnrollmentRecord,
    LeveledSkill,
    ProgramRecord,
    SessionRecord,
    SkillRecord,
)

from .info import Info
from .live import MetricBucket, MetricKind, MetricSample, MetricSampleConnection, SessionSummary
from .media import Media
from .node import Node
from .relay import Connection, connection

if TYPE_CHECKING:
    from .coaching import Compliance, Feedback, Questionnaire

F = TypeVar("F", bound=Callable[..., Any])
_COACHING = "coachgraph.schema.coaching"  # its types refer to these: imported lazily


def batched(of: Callable[..., Awaitable[list[Any]]]) -> Callable[[F], F]:
    """Give a resolver its level-at-once form: the compiled engine (coachgraph.engine) awaits
    `of(parents, info, **arguments)` once a round for all the parents of the round (the
    field's arguments are the same for all of them); graphql-core calls the resolver, which is
    `of([self], info, ...)` -- one implementation either way. `of` raising fails every parent
    of the round, as a failing DataLoader batch fails every key; an error of one parent alone
    belongs in its slot, as an Exception instance."""

    def mark(resolver: F) -> F:
        resolver.__batch__ = of  # type: ignore[attr-defined]
        return resolver

    return mark


async def _prerequisites(parents: list[Skill], info: Info) -> list[list[Skill]]:
    loader = info.context.loaders.prerequisites_by_skill_id
    return await _each_many(loader, [p.raw_id for p in parents], Skill.from_record)


async def _unlocks(parents: list[Skill], info: Info) -> list[list[Skill]]:
    loader = info.context.loaders.unlocks_by_skill_id
    return await _each_many(loader, [p.raw_id for p in parents], Skill.from_record)


async def _coach_skills(parents: list[Coach], info: Info) -> list[list[CoachSkill]]:
    loader = info.context.loaders.coach_skills_by_coach_id
    return await _leveled_many(loader, [p.raw_id for p in parents], CoachSkill)


async def _coach_athletes(
    parents: list[Coach], info: Info, first: int | None = 20, after: str | None = None
) -> list[Connection[Athlete]]:
    ctx = info.context
    pages = await queries.athletes_of_coaches(ctx, [p.raw_id for p in parents], first, after)
    return [connection(page, Athlete.from_record, row_id, after=after) for page in pages]


async def _coach_programs(parents: list[Coach], info: Info) -> list[list[Program]]:
    loader = info.context.loaders.programs_by_coach_id
    return await _each_many(loader, [p.raw_id for p in parents], Program.from_record)


async def _athlete_skills(parents: list[Athlete], info: Info) -> list[list[AthleteSkill]]:
    loader = info.context.loaders.athlete_skills_by_athlete_id
    return await _leveled_many(loader, [p.record.id for p in parents], AthleteSkill)


async def _athlete_goals(parents: list[Athlete], info: Info) -> list[list[Skill]]:
    loader = info.context.loaders.goals_by_athlete_id
    return await _each_many(loader, [p.record.id for p in parents], Skill.from_record)


async def _program_skills(parents: list[Program], info: Info) -> list[list[Skill]]:
    loader = info.context.loaders.skills_by_program_id
    return await _each_many(loader, [p.record.id for p in parents], Skill.from_record)


@strawberry.enum(name="Role")
class RoleType(enum.Enum):
    ADMIN = "ADMIN"
    COACH = "COACH"
    ATHLETE = "ATHLETE"


@strawberry.enum
class EnrollmentStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    DROPPED = "DROPPED"


@strawberry.enum
class SessionStatus(enum.Enum):
    SCHEDULED = "SCHEDULED"
    LIVE = "LIVE"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.type
class Skill(Node):
    slug: str
    name: str
    sport: str
    raw_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, r: SkillRecord) -> Skill:
        return cls(
            id=strawberry.ID(to_global_id("Skill", r.id)),
            slug=r.slug,
            name=r.name,
            sport=r.sport,
            raw_id=r.id,
        )

    @strawberry.field(description="Skills to learn before this one.")
    @batched(_prerequisites)
    async def prerequisites(self, info: Info) -> list[Skill]:
        return (await _prerequisites([self], info))[0]

    @strawberry.field(description="Skills this one is a prerequisite of.")
    @batched(_unlocks)
    async def unlocks(self, info: Info) -> list[Skill]:
        return (await _unlocks([self], info))[0]


@strawberry.type
class CoachSkill:
    skill: Skill
    level: int = strawberry.field(description="1..5")


@strawberry.type
class AthleteSkill:
    skill: Skill
    level: int = strawberry.field(description="1..5")


@strawberry.type
class Coach(Node):
    name: str
    headline: str | None
    bio: str | None
    sports: list[str]
    city: str | None
    timezone: str
    capacity: int
    active_athlete_count: int
    accepting_athletes: bool = strawberry.field(description="activeAthleteCount < capacity")
    created_at: datetime
    raw_id: strawberry.Private[int]

    @classmethod
    def from_record(cls, r: CoachRecord) -> Coach:
        return cls(
            id=strawberry.ID(to_global_id("Coach", r.id)),
            name=r.name,
            headline=r.headline,
            bio=r.bio,
            sports=r.sports,
            city=r.city,
            timezone=r.timezone,
            capacity=r.capacity,
            active_athlete_count=r.active_athlete_count,
            accepting_athletes=r.active_athlete_count < r.capacity,
            created_at=r.created_at,
            raw_id=r.id,
        )

    @strawberry.field(description="The latest READY avatar.")
    async def avatar(self, info: Info) -> Media | None:
        return await _avatar(info, "Coach", self.raw_id)

    @strawberry.field(description="What the coach teaches, with levels.")
    @batched(_coach_skills)
    async def skills(self, info: Info) -> list[CoachSkill]:
        return (await _coach_skills([self], info))[0]

    @strawberry.field(description="Athletes the coach coaches, as far as the viewer may see.")
    @batched(_coach_athletes)
    async def athletes(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Athlete]:
        return (await _coach_athletes([self], info, first, after))[0]

    @strawberry.field
    @batched(_coach_programs)
    async def programs(self, info: Info) -> list[Program]:
        return (await _coach_programs([self], info))[0]

    @strawberry.field(description="The coach's sessions the viewer may see.")
    async def sessions(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: SessionStatus | None = None,
    ) -> Connection[TrainingSession]:
        return await _sessions(info, "coach", self.raw_id, first, after, status)

    @strawberry.field(
        description="The coach's questionnaires, at their latest versions: for the coach, "
        "the athletes it coaches and admins."
    )
    async def questionnaires(
        self, info: Info
    ) -> list[Annotated[Questionnaire, strawberry.lazy(_COACHING)]]:
        from .coaching import coach_questionnaires

        return await coach_questionnaires(self, info)


@strawberry.type
class Athlete(Node):
    name: str
    sport: str
    city: str | None
    timezone: str
    level: int = strawberry.field(description="1..5")
    looking_for_coach: bool = strawberry.field(description="Discoverable by coaches when true")
    created_at: datetime
    record: strawberry.Private[AthleteRecord]

    @classmethod
    def from_record(cls, r: AthleteRecord) -> Athlete:
        return cls(
            id=strawberry.ID(to_global_id("Athlete", r.id)),
            name=r.name,
            sport=r.sport,
            city=r.city,
            timezone=r.timezone,
            level=r.level,
            looking_for_coach=r.looking_for_coach,
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field(description="The latest READY avatar.")
    async def avatar(self, info: Info) -> Media | None:
        return await _avatar(info, "Athlete", self.record.id)

    @strawberry.field
    @batched(_athlete_skills)
    async def skills(self, info: Info) -> list[AthleteSkill]:
        return (await _athlete_skills([self], info))[0]

    @strawberry.field
    @batched(_athlete_goals)
    async def goals(self, info: Info) -> list[Skill]:
        return (await _athlete_goals([self], info))[0]

    @strawberry.field(description="For the athlete itself, its coaches and admins.")
    async def coaches(self, info: Info) -> list[Coach]:
        await queries.require_full_access(info.context, self.record)
        audited(info.context, "read:profile", self.record.id)
        loader = info.context.loaders.coaches_by_athlete_id
        return await _each(loader, self.record.id, Coach.from_record)

    @strawberry.field(description="For the athlete itself, its coaches and admins.")
    async def enrollments(self, info: Info) -> list[Enrollment]:
        await queries.require_full_access(info.context, self.record)
        audited(info.context, "read:profile", self.record.id)
        loader = info.context.loaders.enrollments_by_athlete_id
        return await _each(loader, self.record.id, Enrollment.from_record)

    @strawberry.field(description="For the athlete itself, its coaches and admins.")
    async def sessions(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: SessionStatus | None = None,
    ) -> Connection[TrainingSession]:
        await queries.require_full_access(info.context, self.record)
        audited(info.context, "read:profile", self.record.id)
        return await _sessions(info, "athlete", self.record.id, first, after, status)

    @strawberry.field(
        description="Sessions scheduled vs completed in the last `days` days (1..366) and the "
        "window before. For the athlete itself, its coaches and admins; a listed roster is "
        "read in one statement."
    )
    async def compliance(
        self, info: Info, days: int | None = 30
    ) -> Annotated[Compliance, strawberry.lazy(_COACHING)]:
        from .coaching import athlete_compliance

        return await athlete_compliance(self, info, days)


@strawberry.type
class Program(Node):
    title: str
    description: str | None
    sport: str
    level: int
    duration_weeks: int
    enrollment_count: int
    record: strawberry.Private[ProgramRecord]

    @classmethod
    def from_record(cls, r: ProgramRecord) -> Program:
        return cls(
            id=strawberry.ID(to_global_id("Program", r.id)),
            title=r.title,
            description=r.description,
            sport=r.sport,
            level=r.level,
            duration_weeks=r.duration_weeks,
            enrollment_count=r.enrollment_count,
            record=r,
        )

    @strawberry.field
    async def coach(self, info: Info) -> Coach:
        return await coach_by_id(info, self.record.coach_id)

    @strawberry.field(description="READY images, videos and documents of the program.")
    async def media(self, info: Info) -> list[Media]:
        return await _media(info, "Program", self.record.id)

    @strawberry.field(description="Skills the program develops.")
    @batched(_program_skills)
    async def skills(self, info: Info) -> list[Skill]:
        return (await _program_skills([self], info))[0]


@strawberry.type
class Enrollment:
    status: EnrollmentStatus
    enrolled_at: datetime
    record: strawberry.Private[EnrollmentRecord]

    @classmethod
    def from_record(cls, r: EnrollmentRecord) -> Enrollment:
        return cls(status=EnrollmentStatus(r.status), enrolled_at=r.enrolled_at, record=r)

    @strawberry.field
    async def athlete(self, info: Info) -> Athlete:
        return await athlete_by_id(info, self.record.athlete_id)

    @strawberry.field
    async def program(self, info: Info) -> Program:
        return await program_by_id(info, self.record.program_id)


@strawberry.type
class TrainingSession(Node):
    status: SessionStatus
    scheduled_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    notes: str | None
    record: strawberry.Private[SessionRecord]

    @classmethod
    def from_record(cls, r: SessionRecord) -> TrainingSession:
        return cls(
            id=strawberry.ID(to_global_id("TrainingSession", r.id)),
            status=SessionStatus(r.status),
            scheduled_at=r.scheduled_at,
            started_at=r.started_at,
            ended_at=r.ended_at,
            notes=r.notes,
            record=r,
        )

    @strawberry.field
    async def coach(self, info: Info) -> Coach:
        return await coach_by_id(info, self.record.coach_id)

    @strawberry.field
    async def athlete(self, info: Info) -> Athlete:
        return await athlete_by_id(info, self.record.athlete_id)

    @strawberry.field(description="Stored samples in cursor order (first: up to 5000).")
    async def samples(
        self,
        info: Info,
        kinds: list[MetricKind] | None = None,
        after: str | None = None,
        first: int | None = 1000,
    ) -> MetricSampleConnection:
        names = [k.value for k in kinds] if kinds else None
        audited(info.context, "read:samples", self.record.athlete_id)
        page, count = await queries.samples_page(info.context, self.record.id, names, first, after)
        found = connection(page, MetricSample.from_sample, _seq, after=after, total=count)
        return MetricSampleConnection(
            edges=found.edges,
            page_info=found.page_info,
            total=found.total,
            is_compacted=queries.compacted(info.context, self.record.id),
        )

    @strawberry.field(description="Time buckets of one kind, computed in SQL.")
    async def series(self, info: Info, kind: MetricKind, bucket_seconds: int) -> list[MetricBucket]:
        audited(info.context, "read:series", self.record.athlete_id)
        buckets = await queries.series(info.context, self.record.id, kind.value, bucket_seconds)
        return [MetricBucket.from_bucket(b) for b in buckets]

    @strawberry.field
    async def summary(self, info: Info) -> SessionSummary:
        audited(info.context, "read:summary", self.record.athlete_id)
        found = await info.context.loaders.summary_by_session_id.load(self.record.id)
        assert found is not None  # the session row exists: it was just read
        return SessionSummary.from_summary(found)

    @strawberry.field(description="READY media attached to the session (form checks).")
    async def media(self, info: Info) -> list[Media]:
        return await _media(info, "TrainingSession", self.record.id)

    @strawberry.field
    async def program(self, info: Info) -> Program | None:
        if self.record.program_id is None:
            return None
        return await program_by_id(info, self.record.program_id)

    @strawberry.field(description="The athlete's answers to questionnaires after the session.")
    async def feedback(self, info: Info) -> list[Annotated[Feedback, strawberry.lazy(_COACHING)]]:
        from .coaching import session_feedback

        return await session_feedback(self, info)


@strawberry.type(name="Viewer")
class ViewerType:
    role: RoleType
    coach_id: strawberry.Private[int | None]
    athlete_id: strawberry.Private[int | None]

    @strawberry.field
    async def coach(self, info: Info) -> Coach | None:
        if self.coach_id is None:
            return None
        return await coach_by_id(info, self.coach_id)

    @strawberry.field
    async def athlete(self, info: Info) -> Athlete | None:
        if self.athlete_id is None:
            return None
        return await athlete_by_id(info, self.athlete_id)

    @classmethod
    def of(cls, role: Role, coach_id: int | None, athlete_id: int | None) -> ViewerType:
        return cls(role=RoleType(role.value), coach_id=coach_id, athlete_id=athlete_id)


async def coach_by_id(info: Info, coach_id: int) -> Coach:
    return Coach.from_record(await queries.coach(info.context, coach_id))


async def athlete_by_id(info: Info, athlete_id: int) -> Athlete:
    return Athlete.from_record(await queries.athlete(info.context, athlete_id))


async def program_by_id(info: Info, program_id: int) -> Program:
    return Program.from_record(await queries.program(info.context, program_id))


K = TypeVar("K")
R = TypeVar("R")
T = TypeVar("T")
L = TypeVar("L", CoachSkill, AthleteSkill)


async def _each(loader: DataLoader[K, list[R]], key: K, present: Callable[[R], T]) -> list[T]:
    """The rows a list loader holds for `key`, each presented as its GraphQL type."""
    return [present(r) for r in await loader.load(key)]


async def _each_many(
    loader: StoreLoader[K, list[R]], keys: list[K], present: Callable[[R], T]
) -> list[list[T]]:
    """Per key (a batched field's parents), the rows a list loader holds, each presented as
    its GraphQL type."""
    return [[present(r) for r in rows] for rows in await loader.load_level(keys)]


async def _leveled_many(
    loader: StoreLoader[int, list[LeveledSkill]], keys: list[int], kind: type[L]
) -> list[list[L]]:
    # one Skill object per skill of the batch, and one `kind` object per shared (skill, level)
    # record (the store shares them), however many profiles hold it: values, never mutated
    skills: dict[int, Skill] = {}
    shown: dict[int, L] = {}

    def present(r: LeveledSkill) -> L:
        found = shown.get(id(r))
        if found is None:
            skill = skills.get(r.skill.id)
            if skill is None:
                skill = skills[r.skill.id] = Skill.from_record(r.skill)
            found = shown[id(r)] = kind(skill=skill, level=r.level)
        return found

    return [[present(r) for r in rows] for rows in await loader.load_level(keys)]


async def _sessions(
    info: Info,
    parent: str,
    parent_id: int,
    first: int | None,
    after: str | None,
    status: SessionStatus | None,
) -> Connection[TrainingSession]:
    """A coach's or an athlete's sessions the viewer may see, as a connection."""
    status_name = status.value if status else None
    page = await queries.sessions_of(info.context, parent, parent_id, first, after, status_name)
    return connection(page, TrainingSession.from_record, row_id, after=after)


async def _media(info: Info, owner_type: str, owner_id: int) -> list[Media]:
    return await _each(
        info.context.loaders.ready_media_by_owner, (owner_type, owner_id), Media.from_record
    )


async def _avatar(info: Info, owner_type: str, owner_id: int) -> Media | None:
    rows = await info.context.loaders.ready_media_by_owner.load((owner_type, owner_id))
    avatars = [r for r in rows if r.kind == "AVATAR"]
    return Media.from_record(avatars[-1]) if avatars else None


def _seq(sample: Sample) -> int:
    return sample.seq


def row_id(
    record: AthleteRecord | SessionRecord | CoachRecord | ProgramRecord | SkillRecord,
) -> int:
    return record.id
