"""Per-request DataLoaders: one SQL statement per level of a query, never one per row."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from coachgraph.resolvers.policy import Viewer, sessions_visible_to
from coachgraph.stores import athletes, coaches, media, metrics, programs, sessions, skills
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
    SkillRecord,
)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
Fetch = Callable[[list[Any]], Awaitable[dict[Any, R]]]


class ByKeyLoader(DataLoader[K, R | None], Generic[K, R]):
    """One row per key, `None` for misses, from a fetch that returns {key: row}."""

    def __init__(self, fetch: Fetch[R]) -> None:
        async def load(keys: list[K]) -> list[R | None]:
            found = await fetch(keys)
            return [found.get(k) for k in keys]

        super().__init__(load)


class ListByKeyLoader(DataLoader[K, list[R]], Generic[K, R]):
    """A list per key (empty for misses), from a fetch that returns {key: [rows]}."""

    def __init__(self, fetch: Fetch[list[R]]) -> None:
        async def load(keys: list[K]) -> list[list[R]]:
            found = await fetch(keys)
            return [found.get(k, []) for k in keys]

        super().__init__(load)


PageKey = tuple[int, int, int | None, Any]  # parent id, first, after, extra filter
PageFetch = Callable[[list[int], int, int | None, Any], Awaitable[dict[int, Page[R]]]]


class PageByParentLoader(DataLoader[PageKey, Page[R]], Generic[R]):
    """A page of children per parent; keys sharing (first, after, extra) share one statement."""

    def __init__(self, fetch: PageFetch[R]) -> None:
        async def load(keys: list[PageKey]) -> Sequence[Page[R]]:
            groups: dict[tuple[int, int | None, Any], list[int]] = defaultdict(list)
            for parent, first, after, extra in keys:
                groups[(first, after, extra)].append(parent)
            found: dict[PageKey, Page[R]] = {}
            for (first, after, extra), parents in groups.items():
                pages = await fetch(parents, first, after, extra)
                for parent in parents:
                    found[(parent, first, after, extra)] = pages.get(parent, Page([], False, 0))
            return [found[k] for k in keys]

        super().__init__(load)


class Loaders:
    """Every loader of one request, named <Entity>By<Key>; built fresh per request."""

    def __init__(self, db: Database, viewer: Viewer) -> None:
        pool = db.pool

        def by(fn: Callable[..., Awaitable[Any]], name: str) -> Fetch[Any]:
            return lambda keys: fn(pool, **{name: keys})

        self.coach_by_id: ByKeyLoader[int, CoachRecord] = ByKeyLoader(by(coaches.get_many, "ids"))
        self.athlete_by_id: ByKeyLoader[int, AthleteRecord] = ByKeyLoader(
            by(athletes.get_many, "ids")
        )
        self.skill_by_id: ByKeyLoader[int, SkillRecord] = ByKeyLoader(by(skills.get_many, "ids"))
        self.program_by_id: ByKeyLoader[int, ProgramRecord] = ByKeyLoader(
            by(programs.get_many, "ids")
        )
        self.session_by_id: ByKeyLoader[int, SessionRecord] = ByKeyLoader(
            by(sessions.get_many, "ids")
        )
        self.coach_skills_by_coach_id: ListByKeyLoader[int, LeveledSkill] = ListByKeyLoader(
            by(coaches.skills_for, "coach_ids")
        )
        self.athlete_skills_by_athlete_id: ListByKeyLoader[int, LeveledSkill] = ListByKeyLoader(
            by(athletes.skills_for, "athlete_ids")
        )
        self.goals_by_athlete_id: ListByKeyLoader[int, SkillRecord] = ListByKeyLoader(
            by(athletes.goals_for, "athlete_ids")
        )
        self.coaches_by_athlete_id: ListByKeyLoader[int, CoachRecord] = ListByKeyLoader(
            by(coaches.for_athletes, "athlete_ids")
        )
        self.programs_by_coach_id: ListByKeyLoader[int, ProgramRecord] = ListByKeyLoader(
            by(programs.for_coaches, "coach_ids")
        )
        self.skills_by_program_id: ListByKeyLoader[int, SkillRecord] = ListByKeyLoader(
            by(programs.skills_for, "program_ids")
        )
        self.prerequisites_by_skill_id: ListByKeyLoader[int, SkillRecord] = ListByKeyLoader(
            by(skills.prerequisites_for, "skill_ids")
        )
        self.unlocks_by_skill_id: ListByKeyLoader[int, SkillRecord] = ListByKeyLoader(
            by(skills.unlocks_for, "skill_ids")
        )
        self.media_by_id: ByKeyLoader[int, MediaRecord] = ByKeyLoader(by(media.get_many, "ids"))
        self.ready_media_by_owner: ListByKeyLoader[tuple[str, int], MediaRecord] = ListByKeyLoader(
            by(media.ready_for_owners, "keys")
        )
        self.summary_by_session_id: ByKeyLoader[int, metrics.Summary] = ByKeyLoader(
            by(metrics.summaries, "session_ids")
        )
        self.enrollments_by_athlete_id: ListByKeyLoader[int, EnrollmentRecord] = ListByKeyLoader(
            by(programs.enrollments_for, "athlete_ids")
        )

        async def coached(keys: list[int]) -> dict[int, frozenset[int]]:
            return {k: frozenset(await coaches.coached_athlete_ids(pool, coach_id=k)) for k in keys}

        self.coached_athlete_ids_by_coach_id: ByKeyLoader[int, frozenset[int]] = ByKeyLoader(
            coached
        )

        async def athlete_pages(
            parents: list[int], first: int, after: int | None, scope: AthleteScope
        ) -> dict[int, Page[AthleteRecord]]:
            return await coaches.athlete_pages(
                pool, coach_ids=parents, first=first, after=after, scope=scope
            )

        self.athlete_page_by_coach_id: PageByParentLoader[AthleteRecord] = PageByParentLoader(
            athlete_pages
        )

        def session_pages(parent: str) -> PageFetch[SessionRecord]:
            async def fetch(
                parents: list[int], first: int, after: int | None, status: str | None
            ) -> dict[int, Page[SessionRecord]]:
                return await sessions.pages_for(
                    pool,
                    parent=parent,
                    parent_ids=parents,
                    first=first,
                    after=after,
                    status=status,
                    scope=sessions_visible_to(viewer),
                )

            return fetch

        self.session_page_by_coach_id: PageByParentLoader[SessionRecord] = PageByParentLoader(
            session_pages("coach")
        )
        self.session_page_by_athlete_id: PageByParentLoader[SessionRecord] = PageByParentLoader(
            session_pages("athlete")
        )
