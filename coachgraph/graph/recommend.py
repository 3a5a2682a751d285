"""Scoring: neighbourhood in, a small networkx subgraph, ranked matches with reasons out.

Coach for an athlete, a weighted sum (`CONTENT`, or the blend fitted on the deployment's
history by graph/blend.py):
  goal coverage  - the athlete's goals the coach teaches, weighted by the coach's level
  level fit      - the coach teaches those skills at or above the athlete's level
  similar athletes - Adamic-Adar over the subgraph: the coach's athletes who want the same
                   goals, each shared goal weighted 1 / log(1 + how many in the subgraph want it)
  same city
  learned        - the collaborative vectors' cosine (graph/collab.py), read from PostgreSQL by
                   the caller and passed in (negative counts as none)
Hard constraints (same sport, capacity left, not already its coach) are applied by the
backends before scoring, and so is the cut to the best `limit` candidates, by a pre-score:
the levels a coach teaches in the athlete's targets, plus `CITY_PRESCORE` in the same city.
Equal scores break ties by id, so rankings are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import networkx as nx

from coachgraph.graph.model import (
    CoachNeighbourhood,
    PathNeighbourhood,
    ProgramNeighbourhood,
    RosterNeighbourhood,
)


@dataclass(frozen=True, slots=True)
class Weights:
    cover: float
    fit: float
    similar: float
    city: float
    learned: float


# content only (the ranking before issue 17, and matchCoaches' until a fit of the blend on the
# deployment's history finds better: graph/blend.py) and a learned blend measured by hand on
# the latent-preference generator (benchmarks/match_learned.py), kept as a reference for tests
# and benchmarks; matchCoaches ranks by the fitted weights
CONTENT = Weights(cover=0.5, fit=0.1, similar=0.3, city=0.1, learned=0.0)
WEIGHTS = Weights(cover=0.5, fit=0.1, similar=0.0, city=0.1, learned=1.0)
W_COVER, W_FIT, W_SIMILAR, W_CITY = CONTENT.cover, CONTENT.fit, CONTENT.similar, CONTENT.city
CITY_PRESCORE = 3  # both graph backends: the Neo4j one passes it to its Cypher

T = TypeVar("T")


def city_prescore(athlete_city: str | None, coach_city: str | None) -> int:
    """The pre-score of a coach in the athlete's city (cutting candidates, before scoring)."""
    return CITY_PRESCORE if athlete_city is not None and coach_city == athlete_city else 0


@dataclass(frozen=True, slots=True)
class Reasons:
    shared_skills: tuple[int, ...]
    goals_covered: tuple[int, ...]
    similar_athletes: int
    summary: str


@dataclass(frozen=True, slots=True)
class Match:
    id: int
    score: float
    reasons: Reasons


def _skill(k: int) -> tuple[str, int]:
    return ("skill", k)


def _athlete(k: int) -> tuple[str, int]:
    return ("athlete", k)


def _goal_weights(graph: nx.DiGraph, goals: Iterable[int]) -> dict[int, float]:
    """Adamic-Adar weight of each goal: 1 / log(1 + athletes in the subgraph wanting it)."""
    weights = {}
    for goal in goals:
        node = _skill(goal)
        wanting = (
            sum(1 for data in graph._pred[node].values() if data["rel"] == "WANTS")
            if node in graph
            else 0
        )
        weights[goal] = 1.0 / math.log(1 + max(2, wanting))
    return weights


def _adamic_adar(weights: dict[int, float], pairs: Iterable[tuple[int, int]]) -> tuple[float, int]:
    """Sum of shared-goal weights over (athlete, goal) pairs, and how many athletes share."""
    total, athletes = 0.0, set()
    for athlete, goal in pairs:
        total += weights.get(goal, 0.0)
        athletes.add(athlete)
    return total, len(athletes)


def _summary(
    covered: int, of: int, similar: int, city: str | None, what: str, *, chosen: bool = False
) -> str:
    parts = [
        f"{what} {covered} of {of} goal{'s' if of != 1 else ''}"
        if of
        else f"{what} skills you practise"
    ]
    if similar and chosen:
        parts.append(
            f"chosen by {similar} athlete{'s' if similar != 1 else ''} with goals like yours"
        )
    elif similar:
        parts.append(f"{similar} similar athlete{'s' if similar != 1 else ''}")
    elif chosen:
        parts.append("chosen by athletes whose coaches and programs are like yours")
    if city:
        parts.append(f"same city ({city})")
    return "; ".join(parts)


_WANTS: dict[str, object] = {"rel": "WANTS"}
_COACHES: dict[str, object] = {"rel": "COACHES"}
_TEACHES = {level: {"rel": "TEACHES", "level": level} for level in range(1, 6)}


def _subgraph(edges: Iterable[tuple[object, object, dict[str, object]]]) -> nx.DiGraph:
    """A DiGraph from (u, v, attrs) with shared attribute dicts.

    networkx's own adjacency structure, filled directly: add_edges_from copies every attribute
    dict and re-checks every node, which was most of the cost of scoring one athlete.
    """
    graph = nx.DiGraph()
    succ, pred, nodes = graph._succ, graph._pred, graph._node
    for u, v, data in edges:
        if u not in succ:
            succ[u], pred[u], nodes[u] = {}, {}, {}
        if v not in succ:
            succ[v], pred[v], nodes[v] = {}, {}, {}
        succ[u][v] = data
        pred[v][u] = data
    return graph


def rank_coaches(
    n: CoachNeighbourhood,
    first: int,
    learned: Mapping[int, float] | None = None,
    weights: Weights = CONTENT,
) -> list[Match]:
    """The best coaches for the athlete, with reasons; `learned`: each candidate's
    collaborative similarity (graph/collab.py), absent for none."""
    athlete = n.athlete
    targets = athlete.targets
    target_set = set(targets)
    me = _athlete(athlete.info.id)
    edges: list[tuple[object, object, dict[str, object]]] = [
        (me, _skill(t), _WANTS) for t in targets
    ]
    for cand in n.candidates:
        coach = ("coach", cand.info.id)
        edges.extend(
            (coach, _skill(s), _TEACHES[lv]) for s, lv in cand.teaches.items() if s in target_set
        )
        for other, goal in cand.similar:
            edges.append((coach, _athlete(other), _COACHES))
            edges.append((_athlete(other), _skill(goal), _WANTS))
    graph = _subgraph(edges)
    goal_weights = _goal_weights(graph, targets)
    succ = graph._succ
    level = max(1, athlete.info.level)

    signals: list[Signals[tuple[int, list[int], int]]] = []
    for cand in n.candidates:
        coach = ("coach", cand.info.id)
        taught: dict[int, int] = {}
        similar_pairs: list[tuple[int, int]] = []
        for node, data in succ.get(coach, {}).items():
            if data["rel"] == "TEACHES":
                taught[node[1]] = data["level"]
            else:  # COACHES: an athlete of this coach, and the targets it shares
                similar_pairs.extend((node[1], goal[1]) for goal in succ[node])
        covered = [t for t in targets if t in taught]
        coverage = sum(taught[t] for t in covered) / (5.0 * len(targets)) if targets else 0.0
        fit = sum(min(1.0, taught[t] / level) for t in covered) / len(covered) if covered else 0.0
        similar, similar_count = _adamic_adar(goal_weights, similar_pairs)
        same_city = athlete.info.city is not None and athlete.info.city == cand.info.city
        signals.append(
            (
                cand.info.id,
                coverage,
                fit,
                similar,
                1.0 if same_city else 0.0,
                (cand.info.id, covered, similar_count),
            )
        )

    teaches = {cand.info.id: cand.teaches for cand in n.candidates}

    def reasons(extra: tuple[int, list[int], int], same_city: bool, chosen: bool) -> Reasons:
        coach_id, covered, similar_count = extra
        taught = teaches[coach_id]
        goals_covered = tuple(sorted(set(athlete.goals) & set(covered)))
        return Reasons(
            shared_skills=tuple(sorted(set(athlete.skills) & set(taught))),
            goals_covered=goals_covered,
            similar_athletes=similar_count,
            summary=_summary(
                len(goals_covered),
                len(athlete.goals),
                similar_count,
                athlete.info.city if same_city else None,
                "Teaches",
                chosen=chosen,
            ),
        )

    return _top(signals, first, reasons, learned or {}, weights)


# (id, goal coverage, level fit, similar athletes, same city or own coach, what the reasons
# need): each signal in [0, 1] but similar athletes, which is scaled to the best candidate's
Signals = tuple[int, float, float, float, float, T]


# a learned similarity at least this share of the best candidate's is a reason given
CHOSEN_SHARE = 0.5


def _top(
    signals: list[Signals[T]],
    first: int,
    reasons: Callable[[T, bool, bool], Reasons],
    learned: Mapping[int, float],
    w: Weights,
) -> list[Match]:
    """The weighted sum, best first (ties by id); reasons are written only for the matches
    returned. Negative learned similarities count as none."""
    top = max((s[3] for s in signals), default=0.0) or 1.0
    best = max((learned.get(s[0], 0.0) for s in signals), default=0.0)
    chosen = CHOSEN_SHARE * best if best > 0 and w.learned > 0 else math.inf
    scored = [
        (
            round(
                w.cover * cov
                + w.fit * fit
                + w.similar * sim / top
                + w.city * city
                + w.learned * max(0.0, learned.get(i, 0.0)),
                6,
            ),
            i,
            city,
            extra,
        )
        for i, cov, fit, sim, city, extra in signals
    ]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [
        Match(i, score, reasons(extra, city > 0, learned.get(i, 0.0) >= chosen))
        for score, i, city, extra in scored[:first]
    ]


def _written(reasons: Reasons, _: bool, __: bool) -> Reasons:
    return reasons


def rank_athletes(n: RosterNeighbourhood, first: int) -> list[Match]:
    """The athletes looking for a coach whom this coach would serve best."""
    coach = n.coach
    graph = nx.DiGraph()
    me = ("coach", coach.id)
    graph.add_edges_from(
        (me, _skill(s), {"rel": "TEACHES", "level": lv}) for s, lv in n.teaches.items()
    )
    for member, goal in n.roster_goals:
        graph.add_edge(me, _athlete(member), rel="COACHES")
        graph.add_edge(_athlete(member), _skill(goal), rel="WANTS")
    for cand in n.candidates:
        graph.add_edges_from(
            (_athlete(cand.info.id), _skill(g), {"rel": "WANTS"}) for g in cand.wants
        )
    roster = {member for member, _ in n.roster_goals}
    weights = _goal_weights(graph, n.teaches)

    raw: list[Signals[Reasons]] = []
    for cand in n.candidates:
        covered = list(cand.wants)
        coverage = sum(n.teaches[g] for g in covered) / (5.0 * max(1, cand.goal_count))
        fit = (
            sum(min(1.0, n.teaches[g] / max(1, cand.info.level)) for g in covered) / len(covered)
            if covered
            else 0.0
        )
        pairs = [
            (other[1], goal[1])
            for goal in (_skill(g) for g in covered)
            for other, data in graph.pred[goal].items()
            if data["rel"] == "WANTS" and other[1] in roster
        ]
        similar, similar_count = _adamic_adar(weights, pairs)
        same_city = coach.city is not None and coach.city == cand.info.city
        reasons = Reasons(
            shared_skills=tuple(sorted(cand.skills)),
            goals_covered=tuple(covered),
            similar_athletes=similar_count,
            summary=_summary(
                len(covered),
                cand.goal_count,
                similar_count,
                coach.city if same_city else None,
                "You teach",
            ),
        )
        raw.append((cand.info.id, coverage, fit, similar, 1.0 if same_city else 0.0, reasons))
    return _top(raw, first, _written, {}, CONTENT)


def rank_programs(
    n: ProgramNeighbourhood,
    first: int,
    learned: Mapping[int, float] | None = None,
    weights: Weights = CONTENT,
) -> list[Match]:
    """Programs that develop the athlete's goals at a level it can follow; given the nearest
    options instead (above its level, few of its goals), each says how it falls short."""
    athlete = n.athlete
    targets = athlete.targets
    graph = nx.DiGraph()
    for cand in n.candidates:
        program = ("program", cand.info.id)
        graph.add_edges_from((program, _skill(s), {"rel": "DEVELOPS"}) for s in cand.develops)
        for other, goal in cand.enrolled_similar:
            graph.add_edge(_athlete(other), program, rel="ENROLLED_IN")
            graph.add_edge(_athlete(other), _skill(goal), rel="WANTS")
    own_coaches = set(athlete.coaches)
    goal_weights = _goal_weights(graph, targets)

    raw: list[Signals[Reasons]] = []
    for cand in n.candidates:
        program = ("program", cand.info.id)
        develops = {s[1] for s in graph.succ[program]}
        covered = [t for t in targets if t in develops]
        coverage = len(covered) / len(targets) if targets else 0.0
        gap = cand.info.level - athlete.info.level
        fit = 1.0 if gap in (0, 1) else max(0.0, 1.0 - abs(gap) / 4)
        pairs = [
            (other[1], goal[1])
            for other in graph.pred[program]
            for goal in graph.succ[other]
            if goal[0] == "skill"
        ]
        similar, similar_count = _adamic_adar(goal_weights, pairs)
        mine = cand.info.coach_id in own_coaches
        short = ""
        if gap > 1:
            short = f"; above your level ({cand.info.level}, yours {athlete.info.level})"
        if targets and not covered:
            short += "; none of your goals"
        reasons = Reasons(
            shared_skills=tuple(sorted(set(athlete.skills) & develops)),
            goals_covered=tuple(sorted(set(athlete.goals) & set(covered))),
            similar_athletes=similar_count,
            summary=_summary(
                len(set(athlete.goals) & set(covered)),
                len(athlete.goals),
                similar_count,
                None,
                "Develops",
            )
            + short
            + ("; led by your coach" if mine else ""),
        )
        raw.append((cand.info.id, coverage, fit, similar, 1.0 if mine else 0.0, reasons))
    return _top(raw, first, _written, learned or {}, weights)


def skill_path(n: PathNeighbourhood, *, max_programs: int) -> tuple[list[int], list[int]]:
    """Skills still to learn before and including the target, in prerequisite order, and the
    programs that develop them (most of those skills first).

    Walking up from the target stops at skills the athlete has: what lies above them is
    taken as learnt.
    """
    graph = nx.DiGraph()
    graph.add_node(n.target)
    graph.add_edges_from(n.prerequisites)
    has = set(n.athlete.skills)
    needed: set[int] = set()
    stack = [n.target]
    while stack:
        skill = stack.pop()
        if skill in needed or skill in has:
            continue
        needed.add(skill)
        stack.extend(graph.predecessors(skill))
    order = list(nx.lexicographical_topological_sort(graph.subgraph(needed)))
    counts: dict[int, int] = {}
    for program, skill in n.programs:
        if skill in needed:
            counts[program] = counts.get(program, 0) + 1
    programs = sorted(counts, key=lambda p: (-counts[p], p))[:max_programs]
    return order, programs
