"""What the graph backends exchange with the rest of the app: the protocol and neighbourhoods.

A backend stores the projection and, for one query, returns a small neighbourhood; the
scoring in `recommend.py` turns the neighbourhood into a networkx subgraph and ranks it.
Same neighbourhood in, same ranking out, whichever backend supplied it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from coachgraph.stores.graph_source import States


@dataclass(frozen=True, slots=True)
class CoachInfo:
    id: int
    sports: tuple[str, ...]
    city: str | None
    capacity: int
    active: int


@dataclass(frozen=True, slots=True)
class AthleteInfo:
    id: int
    sport: str
    city: str | None
    level: int
    looking: bool


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    id: int
    sport: str
    level: int
    coach_id: int


@dataclass(frozen=True, slots=True)
class AthleteProfile:
    """An athlete with its skills (id → level), goals and current coaches."""

    info: AthleteInfo
    skills: dict[int, int]
    goals: tuple[int, ...]
    coaches: tuple[int, ...] = ()
    programs: tuple[int, ...] = ()

    @property
    def targets(self) -> tuple[int, ...]:
        """What a match should serve: the goals, or failing those the skills practised."""
        return self.goals or tuple(sorted(self.skills))


@dataclass(frozen=True, slots=True)
class CoachCandidate:
    info: CoachInfo
    teaches: dict[int, int]  # skill → level, only skills of interest to the athlete
    similar: tuple[tuple[int, int], ...]  # (athlete, target skill) it coaches that share targets


@dataclass(frozen=True, slots=True)
class CoachNeighbourhood:
    """For matchCoaches: the athlete and the coaches that could take it."""

    athlete: AthleteProfile
    candidates: tuple[CoachCandidate, ...]


@dataclass(frozen=True, slots=True)
class AthleteCandidate:
    info: AthleteInfo
    wants: tuple[int, ...]  # its goals among what the coach teaches
    goal_count: int  # all its goals
    skills: dict[int, int]  # its levels in what the coach teaches


@dataclass(frozen=True, slots=True)
class RosterNeighbourhood:
    """For matchAthletes: the coach, what it teaches, its athletes' goals, and candidates."""

    coach: CoachInfo
    teaches: dict[int, int]
    roster_goals: tuple[tuple[int, int], ...]  # (athlete, goal) of its current athletes
    candidates: tuple[AthleteCandidate, ...]


@dataclass(frozen=True, slots=True)
class ProgramCandidate:
    info: ProgramInfo
    develops: tuple[int, ...]
    enrolled_similar: tuple[tuple[int, int], ...]  # (athlete, target skill)


@dataclass(frozen=True, slots=True)
class ProgramNeighbourhood:
    athlete: AthleteProfile
    candidates: tuple[ProgramCandidate, ...]


@dataclass(frozen=True, slots=True)
class PathNeighbourhood:
    """For skillPath: the prerequisite edges above the target, and programs developing them."""

    athlete: AthleteProfile
    target: int
    prerequisites: tuple[tuple[int, int], ...]  # (prerequisite, skill)
    programs: tuple[tuple[int, int], ...]  # (program, skill it develops)


@dataclass(frozen=True, slots=True)
class GoalFit:
    """For personal search ranking: which of an athlete's goals given coaches teach and given
    programs develop."""

    goals: tuple[int, ...]
    coaches: dict[int, tuple[int, ...]]  # coach → the goals it teaches (only those with any)
    programs: dict[int, tuple[int, ...]]  # program → the goals it develops

    def share(self, kind: str, raw_id: int) -> float:
        """The share of the goals a coach or program serves, 0 to 1."""
        by_kind = {"COACH": self.coaches, "PROGRAM": self.programs}.get(kind)
        if not self.goals or by_kind is None:
            return 0.0
        served = by_kind.get(raw_id, ())
        return len(served) / len(self.goals)


@dataclass
class Snapshot:
    """Every node and edge of a projection, comparable across backends and rebuilds."""

    nodes: set[tuple[object, ...]] = field(default_factory=set)
    edges: set[tuple[object, ...]] = field(default_factory=set)


class GraphStore(Protocol):
    """A graph projection: written by the projector, read for recommendations."""

    name: str
    persistent: bool  # survives a restart of the API (else rebuilt from Postgres at start)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise `Unavailable` when the backend does not answer (healthz)."""
        ...

    async def mark(self, projection: str) -> None:
        """Record in the graph itself that it holds a complete build of `projection`."""
        ...

    async def marked(self, projection: str) -> bool:
        """Whether the mark is still there: False once the server lost its data (restarted
        empty, restored, wiped), when the stored offset no longer describes the graph."""
        ...

    async def clear(self) -> None: ...

    async def apply(self, states: States) -> None:
        """Make the given records' nodes and owned edges equal their state (idempotent)."""

    async def coach_neighbourhood(
        self, athlete_id: int, *, limit: int, include: Sequence[int] = ()
    ) -> CoachNeighbourhood | None:
        """The athlete and up to `limit` candidate coaches (same sport, accepting, not its own),
        plus those of `include` that meet the same constraints (the learned signal's nearest,
        which the pre-score may have cut)."""

    async def roster_neighbourhood(
        self, coach_id: int, *, limit: int
    ) -> RosterNeighbourhood | None:
        """The coach and up to `limit` athletes looking for a coach that it could serve."""

    async def program_neighbourhood(
        self, athlete_id: int, *, limit: int
    ) -> ProgramNeighbourhood | None: ...

    async def path_neighbourhood(
        self, athlete_id: int, target_id: int
    ) -> PathNeighbourhood | None: ...

    async def goal_fit(
        self, athlete_id: int, *, coach_ids: list[int], program_ids: list[int]
    ) -> GoalFit:
        """The athlete's goals, and which of them each given coach and program serves."""

    async def snapshot(self) -> Snapshot: ...
