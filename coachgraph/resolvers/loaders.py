"""Per-request DataLoaders: one SQL statement per level of a query, never one per row.

Each loader is a class named `<Entity>By<Key>Loader` (saleor's `core/dataloaders.py`) whose
`fetch` calls one store function; its base puts the results in key order. `Loaders` builds
each one on first use, for one request only: a loader shared between requests would serve
one viewer's rows to another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from asyncio import Future
from collections import defaultdict
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import ClassVar, Generic, TypeVar

from strawberry.dataloader import DataLoader

from coachgraph import observe
from coachgraph.resolvers.policy import Viewer, sessions_visible_to
from coachgraph.stores import (
    athletes,
    coaches,
    compliance,
    feedback,
    media,
    metrics,
    programs,
    sessions,
    skills,
)
from coachgraph.stores.db import Database
from coachgraph.stores.records import (
    AthleteRecord,
    AthleteScope,
    CoachRecord,
    EnrollmentRecord,
    LeveledSkill,
    MediaRecord,
    Page,
    ProgramRecord,
    SessionRecord,
    SessionScope,
    SkillRecord,
)
from coachgraph.stores.sql import Executor

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")
F = TypeVar("F", bound=Hashable)

PageKey = tuple[int, int, int | None, F]  # parent id, first, after, extra filter


class StoreLoader(DataLoader[K, V], ABC):
    """A DataLoader whose batches go to the stores through `conn`."""

    def __init__(self, conn: Executor) -> None:
        super().__init__(self._counted)
        self.conn = conn

    async def _counted(self, keys: list[K]) -> list[V]:
        observe.count_batch(len(keys))  # batch sizes per operation (api/metrics.py)
        return await self.batch_load(keys)

    @abstractmethod
    async def batch_load(self, keys: list[K]) -> list[V]:
        """One value per key, in key order."""

    async def load_level(self, keys: list[K]) -> list[V]:
        """The values of a whole level's keys at once (a batched field's parents): cached keys
        from the cache, the others in one batch of their own, with no future per key awaited
        and no task per key (DataLoader.load_many makes both for every key). The batch's
        values are cached as load's are, and a load() of one of its keys meanwhile joins it."""
        if len(keys) < 2 or not self.cache:
            # one parent: a resolver called per object (graphql-core's path), whose calls
            # DataLoader batches across the level
            return list(await self.load_many(keys))
        cache = self.cache_map
        futures: dict[K, Future[V]] = {}
        missing: list[K] = []
        for key in keys:
            if key not in futures:
                future = cache.get(key)
                if future is None or future.cancelled():
                    future = self.loop.create_future()
                    cache.set(key, future)
                    missing.append(key)
                futures[key] = future
        if missing:
            try:
                values = await self._counted(missing)
            except BaseException as error:  # every key fails, as in a failed DataLoader batch
                for key in missing:
                    futures[key].set_exception(error)
                    futures[key].exception()  # retrieved: it is raised here
                raise
            for key, value in zip(missing, values, strict=True):
                if isinstance(value, BaseException):
                    futures[key].set_exception(value)
                else:
                    futures[key].set_result(value)
        return [f.result() if f.done() else await f for f in (futures[k] for k in keys)]


class ByKeyLoader(StoreLoader[K, R | None], Generic[K, R]):
    """One row per key, `None` for misses."""

    @abstractmethod
    async def fetch(self, keys: list[K]) -> Mapping[K, R]:
        """The rows found, by key."""

    async def batch_load(self, keys: list[K]) -> list[R | None]:
        found = await self.fetch(keys)
        return [found.get(k) for k in keys]


class ListByKeyLoader(StoreLoader[K, list[R]], Generic[K, R]):
    """A list per key, empty for misses."""

    @abstractmethod
    async def fetch(self, keys: list[K]) -> Mapping[K, list[R]]:
        """The rows found, grouped by key."""

    async def batch_load(self, keys: list[K]) -> list[list[R]]:
        found = await self.fetch(keys)
        return [found.get(k, []) for k in keys]


class PageByParentLoader(StoreLoader[PageKey[F], Page[R]], Generic[F, R]):
    """A page of children per parent; keys sharing (first, after, extra) share one statement."""

    @abstractmethod
    async def fetch(
        self, parent_ids: list[int], first: int, after: int | None, extra: F
    ) -> Mapping[int, Page[R]]:
        """One page per parent found, by parent id."""

    async def batch_load(self, keys: list[PageKey[F]]) -> list[Page[R]]:
        groups: dict[tuple[int, int | None, F], list[int]] = defaultdict(list)
        for parent, first, after, extra in keys:
            groups[(first, after, extra)].append(parent)
        found: dict[PageKey[F], Page[R]] = {}
        for (first, after, extra), parents in groups.items():
            pages = await self.fetch(parents, first, after, extra)
            for parent in parents:
                found[(parent, first, after, extra)] = pages.get(parent, Page([], False, 0))
        return [found[k] for k in keys]


# --- one row per key ---------------------------------------------------------------


class CoachByIdLoader(ByKeyLoader[int, CoachRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, CoachRecord]:
        return await coaches.get_many(self.conn, ids=keys)


class AthleteByIdLoader(ByKeyLoader[int, AthleteRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, AthleteRecord]:
        return await athletes.get_many(self.conn, ids=keys)


class SkillByIdLoader(ByKeyLoader[int, SkillRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, SkillRecord]:
        return await skills.get_many(self.conn, ids=keys)


class ProgramByIdLoader(ByKeyLoader[int, ProgramRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, ProgramRecord]:
        return await programs.get_many(self.conn, ids=keys)


class SessionByIdLoader(ByKeyLoader[int, SessionRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, SessionRecord]:
        return await sessions.get_many(self.conn, ids=keys)


class MediaByIdLoader(ByKeyLoader[int, MediaRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, MediaRecord]:
        return await media.get_many(self.conn, ids=keys)


class SummaryBySessionIdLoader(ByKeyLoader[int, metrics.Summary]):
    async def fetch(self, keys: list[int]) -> Mapping[int, metrics.Summary]:
        return await metrics.summaries(self.conn, session_ids=keys)


class CoachedAthleteIdsByCoachIdLoader(ByKeyLoader[int, frozenset[int]]):
    """The athletes each coach coaches now (the store reads one coach at a time)."""

    async def fetch(self, keys: list[int]) -> Mapping[int, frozenset[int]]:
        return {
            k: frozenset(await coaches.coached_athlete_ids(self.conn, coach_id=k)) for k in keys
        }


# --- a list per key ----------------------------------------------------------------


class CoachSkillsByCoachIdLoader(ListByKeyLoader[int, LeveledSkill]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[LeveledSkill]]:
        return await coaches.skills_for(self.conn, coach_ids=keys)


class AthleteSkillsByAthleteIdLoader(ListByKeyLoader[int, LeveledSkill]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[LeveledSkill]]:
        return await athletes.skills_for(self.conn, athlete_ids=keys)


class GoalsByAthleteIdLoader(ListByKeyLoader[int, SkillRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[SkillRecord]]:
        return await athletes.goals_for(self.conn, athlete_ids=keys)


class CoachesByAthleteIdLoader(ListByKeyLoader[int, CoachRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[CoachRecord]]:
        return await coaches.for_athletes(self.conn, athlete_ids=keys)


class EnrollmentsByAthleteIdLoader(ListByKeyLoader[int, EnrollmentRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[EnrollmentRecord]]:
        return await programs.enrollments_for(self.conn, athlete_ids=keys)


class ProgramsByCoachIdLoader(ListByKeyLoader[int, ProgramRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[ProgramRecord]]:
        return await programs.for_coaches(self.conn, coach_ids=keys)


class SkillsByProgramIdLoader(ListByKeyLoader[int, SkillRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[SkillRecord]]:
        return await programs.skills_for(self.conn, program_ids=keys)


class PrerequisitesBySkillIdLoader(ListByKeyLoader[int, SkillRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[SkillRecord]]:
        return await skills.prerequisites_for(self.conn, skill_ids=keys)


class UnlocksBySkillIdLoader(ListByKeyLoader[int, SkillRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[SkillRecord]]:
        return await skills.unlocks_for(self.conn, skill_ids=keys)


class ReadyMediaByOwnerLoader(ListByKeyLoader[media.OwnerKey, MediaRecord]):
    """Ready media per (owner type, owner id)."""

    async def fetch(self, keys: list[media.OwnerKey]) -> Mapping[media.OwnerKey, list[MediaRecord]]:
        return await media.ready_for_owners(self.conn, keys=keys)


class FeedbackBySessionIdLoader(ListByKeyLoader[int, feedback.FeedbackRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[feedback.FeedbackRecord]]:
        return await feedback.for_sessions(self.conn, session_ids=keys)


class QuestionnaireVersionLoader(ByKeyLoader[tuple[int, int], feedback.QuestionnaireRecord]):
    """A questionnaire as it was at one version: (questionnaire id, version)."""

    async def fetch(
        self, keys: list[tuple[int, int]]
    ) -> Mapping[tuple[int, int], feedback.QuestionnaireRecord]:
        return await feedback.versions(self.conn, keys=keys)


class QuestionnairesByCoachIdLoader(ListByKeyLoader[int, feedback.QuestionnaireRecord]):
    async def fetch(self, keys: list[int]) -> Mapping[int, list[feedback.QuestionnaireRecord]]:
        return await feedback.for_coaches(self.conn, coach_ids=keys)


class ComplianceByAthleteIdLoader(ByKeyLoader[tuple[int, int], compliance.Compliance]):
    """Compliance per (athlete id, days): one statement per distinct `days` of a batch, so a
    listed roster costs one statement whatever its size."""

    async def fetch(
        self, keys: list[tuple[int, int]]
    ) -> Mapping[tuple[int, int], compliance.Compliance]:
        by_days: dict[int, list[int]] = defaultdict(list)
        for athlete_id, days in keys:
            by_days[days].append(athlete_id)
        now = datetime.now(UTC)
        found: dict[tuple[int, int], compliance.Compliance] = {}
        for days, ids in by_days.items():
            rows = await compliance.for_athletes(self.conn, athlete_ids=ids, days=days, now=now)
            found.update(((athlete_id, days), row) for athlete_id, row in rows.items())
        return found


# --- a page per parent -------------------------------------------------------------


class AthletePageByCoachIdLoader(PageByParentLoader[AthleteScope, AthleteRecord]):
    """A coach's athletes; the caller's visibility scope is part of the key."""

    async def fetch(
        self, parent_ids: list[int], first: int, after: int | None, extra: AthleteScope
    ) -> Mapping[int, Page[AthleteRecord]]:
        return await coaches.athlete_pages(
            self.conn, coach_ids=parent_ids, first=first, after=after, scope=extra
        )


class SessionPageLoader(PageByParentLoader[str | None, SessionRecord]):
    """A parent's sessions that `scope` may see; the extra filter is the session status."""

    parent: ClassVar[str]  # "coach" or "athlete": which column the parent ids match

    def __init__(self, conn: Executor, *, scope: SessionScope) -> None:
        super().__init__(conn)
        self.scope = scope

    async def fetch(
        self, parent_ids: list[int], first: int, after: int | None, extra: str | None
    ) -> Mapping[int, Page[SessionRecord]]:
        return await sessions.pages_for(
            self.conn,
            parent=self.parent,
            parent_ids=parent_ids,
            first=first,
            after=after,
            status=extra,
            scope=self.scope,
        )


class SessionPageByCoachIdLoader(SessionPageLoader):
    parent = "coach"


class SessionPageByAthleteIdLoader(SessionPageLoader):
    parent = "athlete"


class Loaders:
    """The loaders of one request, each built on first use; never shared between requests."""

    def __init__(self, db: Database, viewer: Viewer) -> None:
        self._conn = db.pool
        self._viewer = viewer

    @cached_property
    def coach_by_id(self) -> CoachByIdLoader:
        return CoachByIdLoader(self._conn)

    @cached_property
    def athlete_by_id(self) -> AthleteByIdLoader:
        return AthleteByIdLoader(self._conn)

    @cached_property
    def skill_by_id(self) -> SkillByIdLoader:
        return SkillByIdLoader(self._conn)

    @cached_property
    def program_by_id(self) -> ProgramByIdLoader:
        return ProgramByIdLoader(self._conn)

    @cached_property
    def session_by_id(self) -> SessionByIdLoader:
        return SessionByIdLoader(self._conn)

    @cached_property
    def media_by_id(self) -> MediaByIdLoader:
        return MediaByIdLoader(self._conn)

    @cached_property
    def summary_by_session_id(self) -> SummaryBySessionIdLoader:
        return SummaryBySessionIdLoader(self._conn)

    @cached_property
    def coached_athlete_ids_by_coach_id(self) -> CoachedAthleteIdsByCoachIdLoader:
        return CoachedAthleteIdsByCoachIdLoader(self._conn)

    @cached_property
    def coach_skills_by_coach_id(self) -> CoachSkillsByCoachIdLoader:
        return CoachSkillsByCoachIdLoader(self._conn)

    @cached_property
    def athlete_skills_by_athlete_id(self) -> AthleteSkillsByAthleteIdLoader:
        return AthleteSkillsByAthleteIdLoader(self._conn)

    @cached_property
    def goals_by_athlete_id(self) -> GoalsByAthleteIdLoader:
        return GoalsByAthleteIdLoader(self._conn)

    @cached_property
    def coaches_by_athlete_id(self) -> CoachesByAthleteIdLoader:
        return CoachesByAthleteIdLoader(self._conn)

    @cached_property
    def enrollments_by_athlete_id(self) -> EnrollmentsByAthleteIdLoader:
        return EnrollmentsByAthleteIdLoader(self._conn)

    @cached_property
    def programs_by_coach_id(self) -> ProgramsByCoachIdLoader:
        return ProgramsByCoachIdLoader(self._conn)

    @cached_property
    def skills_by_program_id(self) -> SkillsByProgramIdLoader:
        return SkillsByProgramIdLoader(self._conn)

    @cached_property
    def prerequisites_by_skill_id(self) -> PrerequisitesBySkillIdLoader:
        return PrerequisitesBySkillIdLoader(self._conn)

    @cached_property
    def unlocks_by_skill_id(self) -> UnlocksBySkillIdLoader:
        return UnlocksBySkillIdLoader(self._conn)

    @cached_property
    def ready_media_by_owner(self) -> ReadyMediaByOwnerLoader:
        return ReadyMediaByOwnerLoader(self._conn)

    @cached_property
    def feedback_by_session_id(self) -> FeedbackBySessionIdLoader:
        return FeedbackBySessionIdLoader(self._conn)

    @cached_property
    def questionnaire_version(self) -> QuestionnaireVersionLoader:
        return QuestionnaireVersionLoader(self._conn)

    @cached_property
    def questionnaires_by_coach_id(self) -> QuestionnairesByCoachIdLoader:
        return QuestionnairesByCoachIdLoader(self._conn)

    @cached_property
    def compliance_by_athlete_id(self) -> ComplianceByAthleteIdLoader:
        return ComplianceByAthleteIdLoader(self._conn)

    @cached_property
    def athlete_page_by_coach_id(self) -> AthletePageByCoachIdLoader:
        return AthletePageByCoachIdLoader(self._conn)

    @cached_property
    def session_page_by_coach_id(self) -> SessionPageByCoachIdLoader:
        return SessionPageByCoachIdLoader(self._conn, scope=sessions_visible_to(self._viewer))

    @cached_property
    def session_page_by_athlete_id(self) -> SessionPageByAthleteIdLoader:
        return SessionPageByAthleteIdLoader(self._conn, scope=sessions_visible_to(self._viewer))
