"""The learned collaborative signal: behaviour vectors by random projection, kept in PostgreSQL.

A one-hop FastRP over the athlete-goal-program-coach graph, written so that every vector is a
sum and an event moves it by a difference:

  x(a) = Σ goals R[g] + Σ enrollments s_e · R[p] + Σ coaches R[k]      (s_e: kept 1, completed
  c(a) = x(a) / |x(a)|                                                  1.5, dropped -0.5)
  v(k) = Σ athletes of k  w_ak · (c(a) - R[k] / |x(a)|)                 (coach vector)
  q(p) = Σ enrollees of p w_ap · (c(a) - s_e R[p] / |x(a)|)              (program vector)

R[n] is a fixed random Gaussian vector per node (seeded by kind and id, so every process and
rebuild draws the same ones: nearly orthogonal in `dims` dimensions); w_ak = recency *
(1 + log(1 + completed sessions)), w_ap = s_e * recency, recency = 2^(age / half-life) counted
from a fixed epoch (a later choice weighs more; scaling every vector alike leaves cosines as
they are). A target's own feature is taken out of what each athlete adds to it, so a coach's
vector says who its athletes are, not that they are its athletes.

cos(c(a), v(k)) is high when the coach's athletes want the athlete's goals, enrolled in the
programs it enrolled in (and kept them), and share its other coaches: item-kNN over every
kind of behaviour at once, in one dot product. The vectors are built from the records (the
same source as either graph backend's projection), so the ranking is the same on networkx
and on Neo4j.

Incremental: an outbox batch names athletes; for each, its stored vector and links are read,
its new ones computed, and each coach and program it touches gets (new - old) added, in one
transaction under a per-athlete advisory lock (replicas applying the same batch converge:
the second sees no difference). A full rebuild is the same operation over every athlete in
chunks, recording how far it got: a restart resumes there, then re-applies the events since
it began. It drops the coach vectors' HNSW index at its start and builds it again at its end
(one pass instead of an insertion per coach per chunk).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from coachgraph.graph.projector import affected
from coachgraph.stores import collab, graph_source
from coachgraph.stores.collab import Behaviour, Link, MatchVectors, Stored
from coachgraph.stores.db import Database
from coachgraph.stores.outbox import Dirty
from coachgraph.stores.sql import Executor

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float64]
EPOCH = 1_577_836_800.0  # 2020-01-01 UTC: recency weights count from here
_KINDS = {"skill": 1, "program": 2, "coach": 3}
GOAL_FEATURE = 1.0
COACH_FEATURE = 1.0
RESIDUE = 1e-4  # a summed vector this short is rounding, not signal
OWN = 1.0  # read time: weight of the athlete's programs' and coaches' vectors in its query
LED = 1.0  # read time: weight of a coach's programs' vectors beside its own


class Basis:
    """The fixed random vector of each node, drawn once per process."""

    def __init__(self, dims: int, seed: int = 17) -> None:
        self.dims = dims
        self.seed = seed
        self._cache: dict[tuple[str, int], Vector] = {}

    def __call__(self, kind: str, raw_id: int) -> Vector:
        found = self._cache.get((kind, raw_id))
        if found is None:
            rng = np.random.default_rng([self.seed, _KINDS[kind], raw_id])
            found = rng.standard_normal(self.dims) / math.sqrt(self.dims)
            self._cache[(kind, raw_id)] = found
        return found


def recency(epoch_seconds: float, half_life_days: int) -> float:
    return float(2.0 ** ((epoch_seconds - EPOCH) / (half_life_days * 86_400.0)))


def athlete_vector(
    b: Behaviour, basis: Basis, half_life_days: int
) -> tuple[Vector, float, tuple[Link, ...]] | None:
    """c(a), |x(a)| and the athlete's links; None for an athlete with no behaviour at all."""
    x = np.zeros(basis.dims)
    links: list[Link] = []
    for goal in b.goals:
        x += GOAL_FEATURE * basis("skill", goal)
    for program, signal, at in b.programs:
        x += signal * basis("program", program)
        links.append(Link("program", program, signal * recency(at, half_life_days), signal))
    for coach, at, sessions in b.coaches:
        x += COACH_FEATURE * basis("coach", coach)
        weight = recency(at, half_life_days) * (1.0 + math.log1p(sessions))
        links.append(Link("coach", coach, weight, COACH_FEATURE))
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        return None
    return x / norm, norm, tuple(links)


def _contribution(vec: Vector, norm: float, link: Link, basis: Basis) -> Vector:
    own = basis(link.kind, link.target)
    return link.weight * (vec - (link.feature / norm) * own)


class CollabVectors:
    """The collaborative vectors as a projection the projector feeds (a persistent sink: its
    offset lives beside the others in projection_offsets)."""

    offset_name = "collab"
    persistent = True

    def __init__(
        self, db: Database, *, dims: int, chunk: int, half_life_days: int, batch: int = 500
    ) -> None:
        self.db = db
        self.basis = Basis(dims)
        self.chunk = chunk
        self.half_life_days = half_life_days
        self.batch = batch  # outbox events per read when a rebuild catches up
        # where the last rebuild began: an offset from which replaying is harmless
        self.rebuilt_from = graph_source.START

    async def apply(self, dirty: Dirty) -> None:
        """Move the vectors of the athletes named, and of the coaches and programs they
        touch, to the athletes' current behaviour (a replay changes nothing)."""
        athletes = sorted(dirty.get("athlete", ()))
        async with self.db.transaction() as conn:
            if athletes:
                await collab.lock_athletes(conn, athletes)
                found = await collab.behaviour(conn, athletes)
                await self._move(conn, athletes, found)
            for kind in ("coach", "program"):
                if dirty.get(kind):
                    await collab.forget_missing(conn, kind, dirty[kind])

    async def _move(self, conn: Executor, athletes: list[int], found: Iterable[Behaviour]) -> None:
        """Write these athletes' vectors from their behaviour (absent: they are gone), adding
        to each coach and program the difference of what they contribute to it."""
        old = await collab.stored(conn, athletes)
        new: dict[int, tuple[Vector, float, tuple[Link, ...]] | None] = dict.fromkeys(athletes)
        for b in found:
            new[b.id] = athlete_vector(b, self.basis, self.half_life_days)
        deltas: dict[tuple[str, int], Vector] = defaultdict(lambda: np.zeros(self.basis.dims))
        for athlete in athletes:
            was: Stored | None = old.get(athlete)
            now = new[athlete]
            if was is not None:
                before = np.asarray(was.vec, dtype=np.float64)
                for link in was.links:
                    deltas[(link.kind, link.target)] -= _contribution(
                        before, was.norm, link, self.basis
                    )
            if now is not None:
                for link in now[2]:
                    deltas[(link.kind, link.target)] += _contribution(
                        now[0], now[1], link, self.basis
                    )
        await collab.write_athletes(
            conn,
            {a: None if v is None else (v[0].tolist(), v[1], v[2]) for a, v in new.items()},
        )
        # an athlete whose only feature is the target adds nothing to it (the rounding of
        # c - R/|x| is no vector)
        moved = {k: d for k, d in deltas.items() if float(np.linalg.norm(d)) > RESIDUE}
        await collab.add(conn, {k: d.tolist() for k, d in moved.items()})

    async def rebuild(self) -> int:
        """Every athlete's vector from scratch, in chunks; resumes a rebuild that was cut off
        (same dimension), then re-applies the outbox events from where the rebuild began.
        Returns the athletes processed by this call."""
        name = self.offset_name
        dims = self.basis.dims
        async with self.db.pool.acquire() as conn:
            state = await collab.rebuild_state(conn, name)
        if state is not None and state[1] == dims:
            after, _, position = state
            log.info("collab vectors: resuming the rebuild after athlete %d", after)
        else:
            async with self.db.transaction() as conn:
                position = await graph_source.horizon(conn)
                await collab.clear(conn)
                await collab.drop_coach_index(conn)
                await collab.save_rebuild(conn, name, after=0, dims=dims, position=position)
            after = 0
        count = 0
        started = time.perf_counter()
        while True:
            async with self.db.transaction() as conn:
                found = await collab.behaviour_after(conn, after, self.chunk)
                if not found:
                    break
                ids = [b.id for b in found]
                await collab.lock_athletes(conn, ids)
                await self._move(conn, ids, found)
                after = ids[-1]
                await collab.save_rebuild(conn, name, after=after, dims=dims, position=position)
            count += len(found)
        await self.catch_up(position)
        self.rebuilt_from = position
        async with self.db.pool.acquire() as conn:
            await collab.create_coach_index(conn)
            await collab.end_rebuild(conn, name)
        log.info("collab vectors: %d athletes in %.1f s", count, time.perf_counter() - started)
        return count

    async def catch_up(self, position: graph_source.Position) -> None:
        """Apply every settled outbox event after `position`."""
        while events := await graph_source.events_after(
            self.db.pool, position=position, limit=self.batch
        ):
            await self.apply(affected(events)[0])
            position = events[-1].position

    async def size(self) -> tuple[int, int]:
        """Rows and bytes of the vectors and their links in PostgreSQL."""
        return await collab.size(self.db.pool)

    async def similarity(self, athlete_id: int, coach_ids: list[int]) -> dict[int, float]:
        return await learned_scores(self.db.pool, athlete_id, coach_ids)


def _unit(vec: Vector) -> Vector:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def query_vector(m: MatchVectors, *, own: float = OWN) -> Vector | None:
    """The athlete's side of a second propagation step, at read time: its own vector plus
    (weight `own`) the unit vectors of the programs it enrolled in (signed by what it did with
    them) and of its coaches. None for an athlete without a vector."""
    if m.athlete is None:
        return None
    query = np.asarray(m.athlete, dtype=np.float64)
    for vec, signal in m.programs:
        query = query + own * signal * _unit(np.asarray(vec, dtype=np.float64))
    for vec in m.coaches:
        query = query + own * _unit(np.asarray(vec, dtype=np.float64))
    return _unit(query)


def learned_similarity(m: MatchVectors, *, own: float = OWN, led: float = LED) -> dict[int, float]:
    """Each candidate coach's similarity to the athlete, in [-1, 1]: the query vector against
    the coach's own unit vector plus (weight `led`) the mean of the unit vectors of the
    programs it leads (who kept them, and who dropped them, say whom it suits). One matrix
    product over the candidates."""
    query = query_vector(m, own=own)
    if query is None or not m.candidates:
        return {}
    ids = list(m.candidates)
    raw = np.asarray([m.candidates[c] for c in ids], dtype=np.float64)
    norms = np.linalg.norm(raw, axis=1)
    kept = norms > RESIDUE  # what is left when every athlete left is no vector
    if not kept.any():
        return {}
    ids = [c for c, k in zip(ids, kept, strict=True) if k]
    target = raw[kept] / norms[kept][:, None]
    for row, coach in enumerate(ids):
        programs = m.led.get(coach)
        if programs:
            p = np.asarray(programs, dtype=np.float64)
            pn = np.linalg.norm(p, axis=1, keepdims=True)
            p = np.divide(p, pn, out=np.zeros_like(p), where=pn > 0)
            target[row] += led * p.mean(axis=0)
    tn = np.linalg.norm(target, axis=1)
    target = np.divide(target, tn[:, None], out=np.zeros_like(target), where=tn[:, None] > 0)
    return dict(zip(ids, (float(x) for x in target @ query), strict=True))


async def learned_candidates(conn: Executor, athlete_id: int, *, limit: int) -> list[int]:
    """The coaches whose vectors lie nearest the athlete's (same sport, room left, not its
    own): candidates the content pre-score would cut, added to the graph's."""
    if limit <= 0:
        return []
    return await collab.nearest_coaches(conn, athlete_id, limit=limit)


async def learned_scores(conn: Executor, athlete_id: int, coach_ids: list[int]) -> dict[int, float]:
    """Each given coach's learned similarity to the athlete (those with a vector)."""
    return learned_similarity(await collab.match_vectors(conn, athlete_id, coach_ids))
