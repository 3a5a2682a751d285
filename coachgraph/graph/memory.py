"""The embedded graph backend: networkx, in memory, one DiGraph per relation type.

Keeping one adjacency per relation type means "who teaches this goal" never scans the
thousands of athletes who want it. Node keys are ints tagging kind and id (id << 3 | kind)
so the per-relation graphs stay compact, and equal edge attributes share one dict.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx

from coachgraph.graph.model import (
    AthleteCandidate,
    AthleteInfo,
    AthleteProfile,
    CoachCandidate,
    CoachInfo,
    CoachNeighbourhood,
    GoalFit,
    PathNeighbourhood,
    ProgramCandidate,
    ProgramInfo,
    ProgramNeighbourhood,
    RosterNeighbourhood,
    Snapshot,
)
from coachgraph.graph.recommend import city_prescore
from coachgraph.stores.graph_source import (
    AthleteState,
    CoachState,
    ProgramState,
    SkillState,
    States,
)

COACH, ATHLETE, SKILL, PROGRAM = 1, 2, 3, 4
RELATIONS = (
    "TEACHES",
    "HAS_SKILL",
    "WANTS",
    "COACHES",
    "PREREQUISITE_OF",
    "DEVELOPS",
    "ENROLLED_IN",
    "LEADS",
)
_NO_ATTRS: dict[str, Any] = {}
_LEVELS = {level: {"level": level} for level in range(1, 6)}


def key(kind: int, raw_id: int) -> int:
    return raw_id << 3 | kind


def raw(node: int) -> int:
    return node >> 3


class MemoryGraph:
    """The projection as networkx graphs plus node records, for one process."""

    name = "networkx"
    persistent = False

    def __init__(self) -> None:
        self.rel: dict[str, nx.DiGraph] = {}
        self.coaches: dict[int, CoachInfo] = {}
        self.athletes: dict[int, AthleteInfo] = {}
        self.skills: dict[int, str] = {}
        self.programs: dict[int, ProgramInfo] = {}
        self._reset()

    def _reset(self) -> None:
        self.rel = {name: nx.DiGraph() for name in RELATIONS}
        self.coaches, self.athletes, self.skills, self.programs = {}, {}, {}, {}
        self.marks: set[str] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._reset()

    async def ping(self) -> None:
        return None  # in this process: up whenever the API is

    async def mark(self, projection: str) -> None:
        self.marks.add(projection)

    async def marked(self, projection: str) -> bool:
        return projection in self.marks

    async def clear(self) -> None:
        gc.unfreeze()
        self._reset()

    def freeze(self) -> None:
        """After a bulk load: keep the big graph out of full garbage-collection passes."""
        gc.collect()
        gc.freeze()

    # ------------------------------------------------------------------ writes
    async def apply(self, states: States) -> None:
        for coach in states.coaches:
            self._coach(coach)
        for athlete in states.athletes:
            self._athlete(athlete)
        for skill in states.skills:
            self._skill(skill)
        for program in states.programs:
            self._program(program)
        for kind, ids in states.missing.items():
            for raw_id in ids:
                self._remove(kind, raw_id)

    def _link(self, relation: str, u: int, v: int, data: dict[str, Any]) -> None:
        # networkx's own add_edge minus a fresh attribute dict per edge: equal attributes
        # share one dict (a third of the memory of a big graph)
        graph = self.rel[relation]
        if u not in graph._succ:
            graph.add_node(u)
        if v not in graph._succ:
            graph.add_node(v)
        graph._succ[u][v] = data
        graph._pred[v][u] = data

    def _replace_out(
        self, relation: str, u: int, targets: Iterable[tuple[int, dict[str, Any]]]
    ) -> None:
        graph = self.rel[relation]
        if u in graph:
            graph.remove_edges_from([(u, v) for v in list(graph._succ[u])])
        for v, data in targets:
            self._link(relation, u, v, data)

    def _replace_in(self, relation: str, v: int, sources: Iterable[int]) -> None:
        graph = self.rel[relation]
        if v in graph:
            graph.remove_edges_from([(u, v) for u in list(graph._pred[v])])
        for u in sources:
            self._link(relation, u, v, _NO_ATTRS)

    def _coach(self, s: CoachState) -> None:
        self.coaches[s.id] = CoachInfo(s.id, s.sports, s.city, s.capacity, s.active)
        node = key(COACH, s.id)
        self._replace_out("TEACHES", node, ((key(SKILL, k), _LEVELS[lv]) for k, lv in s.teaches))

    def _athlete(self, s: AthleteState) -> None:
        self.athletes[s.id] = AthleteInfo(s.id, s.sport, s.city, s.level, s.looking)
        node = key(ATHLETE, s.id)
        self._replace_out("HAS_SKILL", node, ((key(SKILL, k), _LEVELS[lv]) for k, lv in s.skills))
        self._replace_out("WANTS", node, ((key(SKILL, k), _NO_ATTRS) for k in s.goals))
        self._replace_out("ENROLLED_IN", node, ((key(PROGRAM, p), _NO_ATTRS) for p in s.programs))
        self._replace_in("COACHES", node, (key(COACH, c) for c in s.coaches))

    def _skill(self, s: SkillState) -> None:
        self.skills[s.id] = s.sport
        self._replace_in(
            "PREREQUISITE_OF", key(SKILL, s.id), (key(SKILL, p) for p in s.prerequisites)
        )

    def _program(self, s: ProgramState) -> None:
        self.programs[s.id] = ProgramInfo(s.id, s.sport, s.level, s.coach_id)
        node = key(PROGRAM, s.id)
        self._replace_out("DEVELOPS", node, ((key(SKILL, k), _NO_ATTRS) for k in s.skills))
        self._replace_in("LEADS", node, [key(COACH, s.coach_id)])

    def _remove(self, kind: str, raw_id: int) -> None:
        records: dict[str, dict[int, Any]] = {
            "coach": self.coaches,
            "athlete": self.athletes,
            "skill": self.skills,
            "program": self.programs,
        }
        records[kind].pop(raw_id, None)
        code = {"coach": COACH, "athlete": ATHLETE, "skill": SKILL, "program": PROGRAM}[kind]
        node = key(code, raw_id)
        for graph in self.rel.values():
            if node in graph:
                graph.remove_node(node)

    # ------------------------------------------------------------------ reads
    def _profile(self, athlete_id: int) -> AthleteProfile | None:
        info = self.athletes.get(athlete_id)
        if info is None:
            return None
        node = key(ATHLETE, athlete_id)
        return AthleteProfile(
            info,
            skills={raw(s): d["level"] for s, d in _out(self.rel["HAS_SKILL"], node)},
            goals=tuple(sorted(raw(s) for s, _ in _out(self.rel["WANTS"], node))),
            coaches=tuple(sorted(raw(c) for c in _in(self.rel["COACHES"], node))),
            programs=tuple(sorted(raw(p) for p, _ in _out(self.rel["ENROLLED_IN"], node))),
        )

    async def coach_neighbourhood(
        self, athlete_id: int, *, limit: int, include: Sequence[int] = ()
    ) -> CoachNeighbourhood | None:
        profile = self._profile(athlete_id)
        if profile is None:
            return None
        targets = set(profile.targets)
        interesting = targets | set(profile.skills)
        current = set(profile.coaches)
        teaches, wants, coaches_rel = self.rel["TEACHES"], self.rel["WANTS"], self.rel["COACHES"]
        # pre-score (recommend.py): levels taught in the targets, plus the same city's; the
        # cap keeps the best `limit` (Neo4jGraph orders its candidates the same way)
        hits: dict[int, int] = {}
        city, sport = profile.info.city, profile.info.sport
        coaches = self.coaches
        for target in targets:
            pred = teaches._pred.get(key(SKILL, target))
            if not pred:
                continue
            for c, data in pred.items():
                cid = c >> 3
                info = coaches.get(cid)
                if (
                    info is not None
                    and info.active < info.capacity
                    and sport in info.sports
                    and cid not in current
                ):
                    bonus = 0 if cid in hits else city_prescore(city, info.city)
                    hits[cid] = hits.get(cid, 0) + data["level"] + bonus
        chosen = set(_best(hits, limit))
        for cid in include:
            info = coaches.get(cid)
            if (
                info is not None
                and info.active < info.capacity
                and sport in info.sports
                and cid not in current
            ):
                chosen.add(cid)
        # hot loop (per candidate, per athlete it coaches): plain dict access, ids by shift
        teach_succ, coach_succ, want_succ = teaches._succ, coaches_rel._succ, wants._succ
        target_keys = {key(SKILL, t) for t in targets}
        candidates = []
        for cid in sorted(chosen):
            node = key(COACH, cid)
            taught = {
                s >> 3: d["level"]
                for s, d in teach_succ.get(node, {}).items()
                if s >> 3 in interesting
            }
            pairs = [
                (a >> 3, g >> 3)
                for a in coach_succ.get(node, ())
                for g in want_succ.get(a, ())
                if g in target_keys
            ]
            pairs.sort()
            candidates.append(CoachCandidate(coaches[cid], taught, tuple(pairs)))
        return CoachNeighbourhood(profile, tuple(candidates))

    async def roster_neighbourhood(
        self, coach_id: int, *, limit: int
    ) -> RosterNeighbourhood | None:
        coach = self.coaches.get(coach_id)
        if coach is None:
            return None
        node = key(COACH, coach_id)
        teaches = {raw(s): d["level"] for s, d in _out(self.rel["TEACHES"], node)}
        wants, has = self.rel["WANTS"], self.rel["HAS_SKILL"]
        roster = [raw(a) for a, _ in _out(self.rel["COACHES"], node)]
        roster_goals = tuple(
            sorted((a, raw(g)) for a in roster for g, _ in _out(wants, key(ATHLETE, a)))
        )
        mine = set(roster)
        hits: dict[int, int] = {}
        for skill in teaches:
            for a in _in(wants, key(SKILL, skill)):
                aid = raw(a)
                info = self.athletes.get(aid)
                if (
                    info is not None
                    and info.looking
                    and aid not in mine
                    and info.sport in coach.sports
                ):
                    hits[aid] = hits.get(aid, 0) + 1
        candidates = []
        for aid in sorted(_best(hits, limit)):
            a = key(ATHLETE, aid)
            goals = [raw(g) for g, _ in _out(wants, a)]
            candidates.append(
                AthleteCandidate(
                    self.athletes[aid],
                    wants=tuple(sorted(g for g in goals if g in teaches)),
                    goal_count=len(goals),
                    skills={raw(s): d["level"] for s, d in _out(has, a) if raw(s) in teaches},
                )
            )
        return RosterNeighbourhood(coach, teaches, roster_goals, tuple(candidates))

    async def program_neighbourhood(
        self, athlete_id: int, *, limit: int
    ) -> ProgramNeighbourhood | None:
        profile = self._profile(athlete_id)
        if profile is None:
            return None
        targets = set(profile.targets)
        enrolled = set(profile.programs)
        develops, enrolled_in, wants = (
            self.rel["DEVELOPS"],
            self.rel["ENROLLED_IN"],
            self.rel["WANTS"],
        )
        hits: dict[int, int] = {}
        for target in targets:
            for p in _in(develops, key(SKILL, target)):
                info = self.programs.get(raw(p))
                if (
                    info is not None
                    and info.id not in enrolled
                    and info.sport == profile.info.sport
                    and info.level <= profile.info.level + 1
                ):
                    hits[info.id] = hits.get(info.id, 0) + 1
        candidates = []
        for pid in sorted(_best(hits, limit)):
            node = key(PROGRAM, pid)
            similar = tuple(
                sorted(
                    (raw(a), raw(g))
                    for a in _in(enrolled_in, node)
                    if raw(a) != athlete_id
                    for g, _ in _out(wants, a)
                    if raw(g) in targets
                )
            )
            develops_ids = tuple(sorted(raw(s) for s, _ in _out(develops, node)))
            candidates.append(ProgramCandidate(self.programs[pid], develops_ids, similar))
        return ProgramNeighbourhood(profile, tuple(candidates))

    async def path_neighbourhood(self, athlete_id: int, target_id: int) -> PathNeighbourhood | None:
        profile = self._profile(athlete_id)
        if profile is None or target_id not in self.skills:
            return None
        prereq = self.rel["PREREQUISITE_OF"]
        target = key(SKILL, target_id)
        above = nx.ancestors(prereq, target) if target in prereq else set()
        nodes = above | {target}
        edges = tuple(sorted((raw(u), raw(v)) for u, v in prereq.subgraph(nodes).edges))
        develops = self.rel["DEVELOPS"]
        programs = tuple(
            sorted(
                (raw(p), raw(s))
                for s in nodes
                for p in _in(develops, s)
                if self.programs.get(raw(p)) is not None
            )
        )
        return PathNeighbourhood(profile, target_id, edges, programs)

    async def goal_fit(
        self, athlete_id: int, *, coach_ids: list[int], program_ids: list[int]
    ) -> GoalFit:
        goals = tuple(sorted(raw(g) for g, _ in _out(self.rel["WANTS"], key(ATHLETE, athlete_id))))

        def serving(relation: str, kind: int, ids: list[int]) -> dict[int, tuple[int, ...]]:
            succ = self.rel[relation]._succ
            found = {}
            for i in ids:
                out = succ.get(key(kind, i)) or {}
                served = tuple(g for g in goals if key(SKILL, g) in out)
                if served:
                    found[i] = served
            return found

        return GoalFit(
            goals,
            serving("TEACHES", COACH, coach_ids) if goals else {},
            serving("DEVELOPS", PROGRAM, program_ids) if goals else {},
        )

    async def snapshot(self) -> Snapshot:
        snap = Snapshot()
        for c in self.coaches.values():
            snap.nodes.add(("Coach", c.id, c.sports, c.city, c.capacity, c.active))
        for a in self.athletes.values():
            snap.nodes.add(("Athlete", a.id, a.sport, a.city, a.level, a.looking))
        for sid, sport in self.skills.items():
            snap.nodes.add(("Skill", sid, sport))
        for p in self.programs.values():
            snap.nodes.add(("Program", p.id, p.sport, p.level, p.coach_id))
        for relation, graph in self.rel.items():
            for u, v, data in graph.edges(data=True):
                snap.edges.add((relation, raw(u), raw(v), data.get("level")))
        return snap


def _best(hits: dict[int, int], limit: int) -> list[int]:
    """Candidates serving the most targets first (ties by id): a cap drops the weakest."""
    return sorted(hits, key=lambda i: (-hits[i], i))[:limit]


def _out(graph: nx.DiGraph, node: int) -> Iterable[tuple[int, dict[str, Any]]]:
    succ = graph._succ.get(node)
    return succ.items() if succ else ()


def _in(graph: nx.DiGraph, node: int) -> Iterable[int]:
    pred = graph._pred.get(node)
    return pred.keys() if pred else ()
