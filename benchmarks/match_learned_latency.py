"""matchCoaches with the learned blend at scale: the cost of each step (issue 17).

    python -m benchmarks.match_learned_latency [--coaches 5000 --athletes 100000 --queries 300]

The latent-preference world of benchmarks/match_learned.py (nothing held out), written to an
embedded PostgreSQL, projected into networkx, its vectors built and its blend weights fitted
(`reindex --vectors`' two steps, timed). Then, for `--queries` random athletes, the steps
matchCoaches runs with the learned blend on, each timed, in the resolver's order:
  weights   - the fitted weights (cached: a dictionary read after the first)
  nearest   - the coaches nearest by vector under the hard constraints: the HNSW index of
              migration 0046 (iterative scan), and, for comparison, the exact scan
  graph     - the graph layer: coach_neighbourhood with those coaches included
  vectors   - the candidates' vectors and similarities (one statement, then numpy)
  scoring   - rank_coaches
  total     - weights + nearest (HNSW) + graph + vectors + scoring, measured end to end
In process, no HTTP or GraphQL (benchmarks/match_latency.py measures those). Also: the
overlap of the HNSW and exact nearest coaches, and the cost of one athlete's event (its
vectors and those it touches moved, in one transaction) with the index to maintain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.common import percentile
from benchmarks.match_learned import generate, write
from coachgraph.config import Limits
from coachgraph.graph import blend, recommend
from coachgraph.graph.collab import CollabVectors, learned_scores
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores import collab
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate


def ms(values: list[float]) -> str:
    return f"{percentile(values, 0.5) * 1000:.2f} / {percentile(values, 0.95) * 1000:.2f}"


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.gettempdir()) / "coachgraph-bench-learned-latency"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    db = await Database.connect(await server.start(), min_size=1, max_size=4)
    process = psutil.Process(os.getpid())
    limits = Limits()
    began = time.perf_counter()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        t = time.perf_counter()
        w = generate(args, args.seed)
        await write(db, w)
        generated = time.perf_counter() - t
        edges = (
            sum(len(s) for s in w.coach_skills.values())
            + sum(len(g) for g in w.athlete_goals.values())
            + len(w.enrollments)
            + len(w.assignments)
            + sum(len(s) + 1 for _, s, _ in w.programs.values())
        )
        rss = process.memory_info().rss
        t = time.perf_counter()
        graph = MemoryGraph()
        await Projector(db, graph, name="bench").rebuild()
        projected = time.perf_counter() - t
        graph_mib = (process.memory_info().rss - rss) / 2**20
        store = CollabVectors(
            db,
            dims=limits.collab_dims,
            chunk=limits.collab_rebuild_chunk,
            half_life_days=limits.collab_half_life_days,
        )
        t = time.perf_counter()
        await store.rebuild()
        built = time.perf_counter() - t
        rows, size = await collab.size(db.pool)
        rss = process.memory_info().rss
        t = time.perf_counter()
        fitted = await blend.fit_for(db, limits, samples=args.fit_samples)
        fit_s = time.perf_counter() - t
        fit_mib = (process.memory_info().rss - rss) / 2**20
        weights = blend.weights_of(fitted)
        if weights.learned == 0:  # the latency of the blend is what is measured
            weights = recommend.WEIGHTS
        await db.pool.execute("VACUUM ANALYZE")

        rng = random.Random(args.seed)
        sample = rng.sample(sorted(w.athlete_style), args.queries)
        steps: dict[str, list[float]] = {
            k: []
            for k in ("weights", "nearest", "nearest exact", "graph", "vectors", "scoring", "total")
        }
        overlap = []
        pool = db.pool
        for n, athlete in enumerate(sample):
            if n % 2:  # the exact scan first every other time: neither gets a warmer cache
                t = time.perf_counter()
                exact = await collab.nearest_coaches(pool, athlete, limit=30, exact=True)
                steps["nearest exact"].append(time.perf_counter() - t)
            t0 = time.perf_counter()
            current = await blend.current(pool, ttl=300)
            t1 = time.perf_counter()
            near = await collab.nearest_coaches(pool, athlete, limit=limits.collab_candidates)
            t2 = time.perf_counter()
            found = await graph.coach_neighbourhood(
                athlete, limit=limits.match_candidates, include=near
            )
            t3 = time.perf_counter()
            assert found is not None
            learned = await learned_scores(pool, athlete, [c.info.id for c in found.candidates])
            t4 = time.perf_counter()
            recommend.rank_coaches(found, 10, learned, weights)
            t5 = time.perf_counter()
            del current
            for name, value in (
                ("weights", t1 - t0),
                ("nearest", t2 - t1),
                ("graph", t3 - t2),
                ("vectors", t4 - t3),
                ("scoring", t5 - t4),
                ("total", t5 - t0),
            ):
                steps[name].append(value)
            if not n % 2:
                t = time.perf_counter()
                exact = await collab.nearest_coaches(pool, athlete, limit=30, exact=True)
                steps["nearest exact"].append(time.perf_counter() - t)
            overlap.append(len(set(near) & set(exact)) / max(1, len(exact)))

        events = []
        for athlete in sample[:200]:
            await pool.execute(
                "UPDATE enrollments SET status = 'DROPPED' WHERE athlete_id = $1", athlete
            )
            t = time.perf_counter()
            await store.apply({"athlete": {athlete}})
            events.append(time.perf_counter() - t)

        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL hnsw.iterative_scan = 'relaxed_order'")
            plan = await conn.fetch(
                "EXPLAIN SELECT v.id FROM collab_vectors v JOIN coaches c ON c.id = v.id "
                "WHERE v.kind = 'coach' AND vector_dims(v.vec) = 128 "
                "AND c.active_athlete_count < c.capacity "
                "ORDER BY v.vec::vector(128) <=> (SELECT vec::vector(128) FROM collab_vectors "
                "WHERE kind = 'athlete' AND id = $1) LIMIT 30",
                sample[0],
            )
        uses_index = any("collab_coach_hnsw" in r[0] for r in plan)

        print(
            f"\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  python -m "
            f"benchmarks.match_learned_latency --coaches {args.coaches} --athletes "
            f"{args.athletes} --queries {args.queries} --fit-samples {args.fit_samples} "
            f"(shared 2-core machine)"
        )
        print(
            f"{args.coaches:,} coaches, {args.athletes:,} athletes, {len(w.programs):,} "
            f"programs, {len(w.assignments):,} assignments, {len(w.enrollments):,} "
            f"enrollments, ~{edges:,} edges; generated and written in {generated:.0f} s"
        )
        print(
            f"networkx projection: {projected:.1f} s, +{graph_mib:.0f} MiB RSS; vectors: "
            f"{built:.1f} s, {rows:,} rows, {size / 2**20:.0f} MiB in PostgreSQL; fit "
            f"({fitted.samples} held out): {fit_s:.1f} s, +{fit_mib:.0f} MiB RSS; "
            f"{fitted.reason}"
        )
        print(f"HNSW index used by the planner: {uses_index}")
        print("\n| step | p50 / p95 ms |\n|---|---|")
        for name, values in steps.items():
            print(f"| {name} | {ms(values)} |")
        print(
            f"\nHNSW vs exact nearest 30: mean overlap {sum(overlap) / len(overlap):.3f}, "
            f"min {min(overlap):.2f}"
        )
        print(f"one athlete's event (vectors moved, index maintained): {ms(events)} ms")
        print(f"total run {time.perf_counter() - began:.0f} s")
    finally:
        await db.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--coaches", type=int, default=5000)
    parser.add_argument("--athletes", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--fit-samples", type=int, default=Limits().collab_fit_samples)
    parser.add_argument("--styles", type=int, default=6)
    parser.add_argument("--visible", type=float, default=0.35)
    parser.add_argument("--enrollments", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.7)
    parser.add_argument("--hide", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=17)
    asyncio.run(main(parser.parse_args()))
