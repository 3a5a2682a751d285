"""The blend's weights, measured on the deployment's own history rather than guessed.

Whether behaviour says anything the profile does not depends on the platform: where athletes
choose coaches by goals and city alone, the learned term is noise and its right weight is 0;
where they choose by something no field records, it carries most of the signal. So the vector
job fits the weights from what athletes did:

* it holds out the latest assignment of the `samples` athletes assigned most recently, at most
  a fifth of the athletes with a coach (a time split: what the ranking would have been asked
  just before those choices; the rest is the history it learns from);
* it rebuilds, in memory, what the ranking reads as if those assignments had not happened:
  the networkx graph (the real backend code, fed the records minus the held-out assignments,
  their coaches' loads one lower) and the collaborative vectors (graph/collab.py's arithmetic
  over the records minus the held-out links, and minus the athlete's enrollments in programs
  of the held-out coach, which follow the choice);
* for each held-out pair it asks the ranking code (recommend.rank_coaches, learned_similarity,
  the nearest coaches by vector under the hard constraints, as matchCoaches does) for the
  athlete's top 10 under each weighting of a small grid, and counts how often the chosen
  coach is there (hit@10; MRR@10 breaks ties);
* the best weighting is kept only if it beats the content weights by more than one standard
  error of the paired difference (a noisy win on a few hundred cases is not a measurement);
  else, and with fewer than `min_samples` held-out assignments, the content weights, exactly.

The fit is stored in PostgreSQL (migration 0045) with its sample size and hit rates; the
ranking reads the latest (cached per process for `ttl` seconds) whichever graph backend runs.
The content ranking is the same on both backends (contract suite), so fitting on networkx
holds for Neo4j too.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.collab import (
    Basis,
    Vector,
    _contribution,
    athlete_vector,
    learned_similarity,
)
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import CoachNeighbourhood
from coachgraph.graph.recommend import CONTENT, Weights
from coachgraph.stores import collab, collab_weights, graph_source
from coachgraph.stores.collab import Behaviour, MatchVectors
from coachgraph.stores.collab_weights import Fitted
from coachgraph.stores.db import Database
from coachgraph.stores.graph_source import AthleteState, CoachState, ProgramState, States
from coachgraph.stores.sql import Executor

log = logging.getLogger(__name__)

# the grid: the learned term's weight, and the similar-athletes (Adamic-Adar) term's; goal
# coverage, level fit and city keep the content weights
GRID_LEARNED = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
GRID_SIMILAR = (0.0, 0.3)
MARGIN_SE = 1.0  # a blend must beat content by this many standard errors to be chosen
TOP = 10


@dataclass(frozen=True, slots=True)
class Case:
    athlete: int
    coach: int  # the coach it chose (held out)
    content: CoachNeighbourhood  # the graph's candidates, as the content ranking asks
    wider: CoachNeighbourhood  # plus the coaches nearest by vector, as the blend asks
    learned: dict[int, float]


@dataclass(frozen=True, slots=True)
class Score:
    weights: Weights
    hits: list[int]  # per case: 1 if the chosen coach is in the top 10
    rr: list[float]  # per case: reciprocal rank in the top 10, else 0

    @property
    def hit(self) -> float:
        return sum(self.hits) / max(1, len(self.hits))

    @property
    def mrr(self) -> float:
        return sum(self.rr) / max(1, len(self.rr))


def weights_of(fitted: Fitted | None) -> Weights:
    """The weights a stored fit says to rank by (none stored: the content weights)."""
    if fitted is None:
        return CONTENT
    return Weights(*fitted.weights)


# ------------------------------------------------------------------ the training snapshot


async def _training_graph(
    conn: Executor, held: dict[int, int], led_by: dict[int, int], *, chunk: int
) -> MemoryGraph:
    """The networkx graph of the records as if the held-out assignments (athlete -> coach)
    had not happened: those links and the athlete's enrollments in that coach's programs
    gone, each coach's load lower by its held-out athletes."""
    graph = MemoryGraph()
    lost: dict[int, int] = defaultdict(int)
    for coach in held.values():
        lost[coach] += 1
    async for rows in graph_source.stream_all(conn, "skill", chunk=chunk):
        await graph.apply(States([], [], rows, [], {}))
    async for rows in graph_source.stream_all(conn, "program", chunk=chunk):
        await graph.apply(States([], [], [], rows, {}))
    async for rows in graph_source.stream_all(conn, "coach", chunk=chunk):
        coaches: list[CoachState] = [
            replace(c, active=c.active - lost[c.id]) if c.id in lost else c for c in rows
        ]
        await graph.apply(States(coaches, [], [], [], {}))
    async for rows in graph_source.stream_all(conn, "athlete", chunk=chunk):
        athletes: list[AthleteState] = []
        for a in rows:
            taken = held.get(a.id)
            if taken is not None:
                a = replace(
                    a,
                    coaches=tuple(c for c in a.coaches if c != taken),
                    programs=tuple(p for p in a.programs if led_by.get(p) != taken),
                )
            athletes.append(a)
        await graph.apply(States([], athletes, [], [], {}))
    return graph


def _without(b: Behaviour, coach: int, led_by: dict[int, int]) -> Behaviour:
    return replace(
        b,
        coaches=tuple(c for c in b.coaches if c[0] != coach),
        programs=tuple(p for p in b.programs if led_by.get(p[0]) != coach),
    )


@dataclass
class _Vectors:
    """The collaborative vectors of the training snapshot, in memory: every coach's and
    program's sum, and the held-out athletes' own vectors and enrollments."""

    sums: dict[tuple[str, int], Vector]
    athletes: dict[int, Vector]
    enrolled: dict[int, list[tuple[int, float]]]  # held-out athlete -> (program, signal)


async def _training_vectors(
    conn: Executor,
    held: dict[int, int],
    led_by: dict[int, int],
    basis: Basis,
    *,
    half_life_days: int,
    chunk: int,
) -> _Vectors:
    sums: dict[tuple[str, int], Vector] = {}
    athletes: dict[int, Vector] = {}
    enrolled: dict[int, list[tuple[int, float]]] = {}
    after = 0
    while found := await collab.behaviour_after(conn, after, chunk):
        after = found[-1].id
        for b in found:
            coach = held.get(b.id)
            if coach is not None:
                b = _without(b, coach, led_by)
            made = athlete_vector(b, basis, half_life_days)
            if made is None:
                continue
            vec, norm, links = made
            for link in links:
                target = (link.kind, link.target)
                add = _contribution(vec, norm, link, basis)
                sums[target] = sums[target] + add if target in sums else add
            if coach is not None:
                athletes[b.id] = vec
                enrolled[b.id] = [(p, s) for p, s, _ in b.programs]
    return _Vectors(sums, athletes, enrolled)


class _Nearest:
    """The coaches nearest an athlete's query by cosine, under the hard constraints:
    stores/collab.py's nearest_coaches over the in-memory vectors."""

    def __init__(self, graph: MemoryGraph, vectors: _Vectors) -> None:
        ids = sorted(
            i
            for (kind, i), v in vectors.sums.items()
            if kind == "coach" and i in graph.coaches and float(np.linalg.norm(v)) > 0
        )
        self.ids = np.array(ids, dtype=np.int64)
        self.graph = graph
        if ids:
            matrix = np.array([vectors.sums[("coach", i)] for i in ids])
            self.unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    def __call__(
        self, athlete: int, query: Vector, exclude: Iterable[int], limit: int
    ) -> list[int]:
        if not len(self.ids) or limit <= 0:
            return []
        info = self.graph.athletes[athlete]
        coaches = self.graph.coaches
        mine = set(exclude)
        allowed = np.array(
            [
                info.sport in coaches[i].sports
                and coaches[i].active < coaches[i].capacity
                and i not in mine
                for i in self.ids.tolist()
            ]
        )
        q = query / (float(np.linalg.norm(query)) or 1.0)
        distance = 1.0 - self.unit @ q
        distance[~allowed] = np.inf
        order = np.lexsort((self.ids, distance))
        return [int(self.ids[k]) for k in order[:limit] if np.isfinite(distance[k])]


def _unit(vec: Vector) -> Vector:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def _match_vectors(
    vectors: _Vectors,
    athlete: int,
    coaches: Sequence[int],
    candidates: Sequence[int],
    programs_of: dict[int, list[int]],
) -> MatchVectors:
    """What stores/collab.py's match_vectors reads, from the in-memory vectors."""
    me = vectors.athletes.get(athlete)
    if me is None:
        return MatchVectors(None, [], [], {}, {})
    sums = vectors.sums

    def vec(kind: str, i: int) -> list[float] | None:
        v = sums.get((kind, i))
        return None if v is None else v.tolist()

    programs = [
        (v, signal)
        for p, signal in vectors.enrolled.get(athlete, [])
        if (v := vec("program", p)) is not None
    ]
    own = [v for c in coaches if (v := vec("coach", c)) is not None]
    found = {c: v for c in candidates if (v := vec("coach", c)) is not None}
    led = {
        c: vs
        for c in candidates
        if (vs := [v for p in programs_of.get(c, []) if (v := vec("program", p)) is not None])
    }
    return MatchVectors(me.tolist(), programs, own, found, led)


def _query(vectors: _Vectors, athlete: int, coaches: Sequence[int]) -> Vector | None:
    """stores/collab.py's nearest_coaches query: the athlete's vector plus the unit vectors of
    the programs it did not drop and of its coaches."""
    me = vectors.athletes.get(athlete)
    if me is None:
        return None
    q = me.copy()
    for p, signal in vectors.enrolled.get(athlete, []):
        v = vectors.sums.get(("program", p))
        if v is not None and signal > 0:
            q = q + _unit(v)
    for c in coaches:
        v = vectors.sums.get(("coach", c))
        if v is not None:
            q = q + _unit(v)
    return q


# ------------------------------------------------------------------ the fit


async def held_out_cases(
    db: Database,
    *,
    samples: int,
    dims: int,
    half_life_days: int,
    candidates: int,
    learned_candidates: int,
    chunk: int = 2_000,
) -> list[Case]:
    """The latest assignments of the `samples` athletes assigned most recently, each with
    what the ranking would have read without it."""
    async with db.pool.acquire() as conn:
        pairs = await collab_weights.recent_assignments(conn, limit=samples)
        if not pairs:
            return []
        held = dict(pairs)
        led_by: dict[int, int] = {}
        programs_of: dict[int, list[int]] = defaultdict(list)
        async for rows in graph_source.stream_all(conn, "program", chunk=chunk):
            for p in rows:
                program: ProgramState = p
                led_by[program.id] = program.coach_id
                programs_of[program.coach_id].append(program.id)
        graph = await _training_graph(conn, held, led_by, chunk=chunk)
        vectors = await _training_vectors(
            conn, held, led_by, Basis(dims), half_life_days=half_life_days, chunk=chunk
        )
    nearest = _Nearest(graph, vectors)
    cases = []
    for athlete, coach in pairs:
        content = await graph.coach_neighbourhood(athlete, limit=candidates)
        if content is None:
            continue
        own = content.athlete.coaches
        query = _query(vectors, athlete, own)
        near = nearest(athlete, query, own, learned_candidates) if query is not None else []
        wider = await graph.coach_neighbourhood(athlete, limit=candidates, include=near)
        assert wider is not None
        ids = [c.info.id for c in wider.candidates]
        learned = learned_similarity(_match_vectors(vectors, athlete, own, ids, programs_of))
        cases.append(Case(athlete, coach, content, wider, learned))
    return cases


def score(cases: Sequence[Case], weights: Weights) -> Score:
    """The ranking's hit@10 and reciprocal ranks on the held-out cases under these weights (a
    learned weight of 0 ranks as matchCoaches then does: the graph's candidates only)."""
    hits, rr = [], []
    for case in cases:
        if weights.learned > 0:
            ranked = recommend.rank_coaches(case.wider, TOP, case.learned, weights)
        else:
            ranked = recommend.rank_coaches(case.content, TOP, None, weights)
        ids = [m.id for m in ranked]
        found = case.coach in ids
        hits.append(1 if found else 0)
        rr.append(1.0 / (ids.index(case.coach) + 1) if found else 0.0)
    return Score(weights, hits, rr)


def grid() -> list[Weights]:
    return [
        replace(CONTENT, learned=learned, similar=similar)
        for similar in GRID_SIMILAR
        for learned in GRID_LEARNED
    ]


def choose(cases: Sequence[Case], *, min_samples: int, history: int | None = None) -> Fitted:
    """The weights to rank by, from the held-out cases (content with too few of them, or
    with `history` assignments to hold out when fewer than `min_samples`)."""
    n = len(cases) if history is None else history
    if n < min_samples:
        return Fitted(
            astuple(CONTENT),
            n,
            None,
            None,
            [],
            f"content weights: {n} assignments to hold out, fewer than {min_samples}",
        )
    base = score(cases, CONTENT)
    scores = [score(cases, w) for w in grid() if w != CONTENT]
    scores.append(base)
    best = min(scores, key=lambda s: (-s.hit, -s.mrr, s.weights.learned, -s.weights.similar))
    table = [
        {
            "learned": s.weights.learned,
            "similar": s.weights.similar,
            "hit": round(s.hit, 4),
            "mrr": round(s.mrr, 4),
        }
        for s in sorted(scores, key=lambda s: (s.weights.similar, s.weights.learned))
    ]
    diffs = [a - b for a, b in zip(best.hits, base.hits, strict=True)]
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, n - 1))
    margin = MARGIN_SE * sd / math.sqrt(n)
    if best.weights == CONTENT or mean <= margin:
        reason = (
            f"content weights: the best blend (learned {best.weights.learned}, similar "
            f"{best.weights.similar}) gains {mean:+.4f} hit@10 over content, not more than "
            f"{MARGIN_SE:g} standard error ({margin:.4f}) on {n} held-out assignments"
        )
        return Fitted(astuple(CONTENT), n, base.hit, base.hit, table, reason)
    reason = (
        f"learned {best.weights.learned}, similar {best.weights.similar}: {mean:+.4f} hit@10 "
        f"over content (standard error {sd / math.sqrt(n):.4f}) on {n} held-out assignments"
    )
    return Fitted(astuple(best.weights), n, base.hit, best.hit, table, reason)


def astuple(w: Weights) -> tuple[float, float, float, float, float]:
    return (w.cover, w.fit, w.similar, w.city, w.learned)


async def fit(
    db: Database,
    *,
    samples: int,
    min_samples: int,
    dims: int,
    half_life_days: int,
    candidates: int,
    learned_candidates: int,
    share_percent: int = 20,
    chunk: int = 2_000,
    store: bool = True,
) -> Fitted:
    """Fit the blend's weights on the latest assignments of `samples` athletes, at most
    `share_percent` of those with a coach, and (by default) store them."""
    started = time.perf_counter()
    async with db.pool.acquire() as conn:
        assigned = await collab_weights.assigned_athletes(conn)
    samples = min(samples, assigned * share_percent // 100)
    if samples < min_samples:  # too little history: nothing to build
        fitted = choose([], min_samples=min_samples, history=samples)
    else:
        cases = await held_out_cases(
            db,
            samples=samples,
            dims=dims,
            half_life_days=half_life_days,
            candidates=candidates,
            learned_candidates=learned_candidates,
            chunk=chunk,
        )
        fitted = choose(cases, min_samples=min_samples)
    if store:
        async with db.pool.acquire() as conn:
            await collab_weights.save(conn, fitted)
    _CACHE.clear()
    log.info("blend weights fitted in %.1f s: %s", time.perf_counter() - started, fitted.reason)
    return fitted


# ------------------------------------------------------------------ read by the ranking

_CACHE: dict[int, tuple[float, Weights]] = {}


async def current(conn: Executor, *, ttl: float) -> Weights:
    """The weights matchCoaches ranks by: the latest stored fit, read at most every `ttl`
    seconds per process (per pool); none stored: the content weights."""
    key = id(conn)
    now = time.monotonic()
    found = _CACHE.get(key)
    if found is not None and now - found[0] < ttl:
        return found[1]
    weights = weights_of(await collab_weights.latest(conn))
    _CACHE[key] = (now, weights)
    return weights


def forget() -> None:
    """Drop the cached weights (after a fit in this process, and between tests)."""
    _CACHE.clear()


async def fit_for(db: Database, limits: Limits, **overrides: int) -> Fitted:
    """`fit` with this deployment's limits (`reindex --vectors`); `overrides` for what a
    benchmark varies (samples, dims, candidates, learned_candidates)."""
    unknown = set(overrides) - {"samples", "dims", "candidates", "learned_candidates"}
    if unknown:
        raise TypeError(f"fit_for cannot override {sorted(unknown)}")
    return await fit(
        db,
        samples=overrides.get("samples", limits.collab_fit_samples),
        min_samples=limits.collab_fit_min_samples,
        share_percent=limits.collab_fit_share_percent,
        dims=overrides.get("dims", limits.collab_dims),
        half_life_days=limits.collab_half_life_days,
        candidates=overrides.get("candidates", limits.match_candidates),
        learned_candidates=overrides.get("learned_candidates", limits.collab_candidates),
        chunk=limits.collab_rebuild_chunk,
    )
