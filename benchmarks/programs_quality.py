"""Does recommendPrograms find the programs athletes enrolled in? (issue 17, held-out enrollments)

    python -m benchmarks.programs_quality [--coaches 300 --athletes 6000 --enrollments 2]

The latent-preference world of benchmarks/match_learned.py (athletes enroll in a program of
a coach of their hidden style with probability 0.5, else any program, at any level; they
drop one of another style with probability 0.6). One enrollment that was not dropped, of 20 %
of the athletes, is held out (never written); the rest are projected and the vectors built.
For each held-out pair, the top 10 of:
  recommendPrograms - the graph's candidates (its goals, at most one level above its own)
                      ranked by rank_programs, or the nearest programs of its sport when none
                      fit (as the resolver does)
  + learned         - the same candidates with the learned similarity of the athlete's query
                      vector to each program's vector (graph/collab.py), weight 1.0: not in
                      the API, measured to see whether it should be
  popularity        - the most-enrolled programs of its sport it is not in
  random            - programs of its sport it is not in
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.match_learned import generate, world_options, write
from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.collab import CollabVectors, query_vector
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import ProgramCandidate, ProgramInfo, ProgramNeighbourhood
from coachgraph.graph.projector import Projector
from coachgraph.stores import collab
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

NAMES = ("recommendPrograms", "recommendPrograms + learned", "popularity", "random")


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.gettempdir()) / "coachgraph-bench-programs"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    db = await Database.connect(await server.start(), min_size=1, max_size=4)
    limits = Limits()
    began = time.perf_counter()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        w = generate(args, args.seed)
        w.hidden = []  # every assignment is written: the enrollments are what is held out
        rng = random.Random(args.seed)
        kept: dict[int, list[int]] = {}
        for a, p, status, _ in w.enrollments:
            if status != "DROPPED":
                kept.setdefault(a, []).append(p)
        held = rng.sample(sorted(kept), int(len(kept) * args.hide))
        hidden = {(a, rng.choice(kept[a])) for a in held}
        w.enrollments = [e for e in w.enrollments if (e[0], e[1]) not in hidden]
        await write(db, w)
        graph = MemoryGraph()
        await Projector(db, graph, name="bench").rebuild()
        store = CollabVectors(
            db,
            dims=limits.collab_dims,
            chunk=limits.collab_rebuild_chunk,
            half_life_days=limits.collab_half_life_days,
        )
        await store.rebuild()
        rows = await db.pool.fetch(
            "SELECT id, vec::real[] AS v FROM collab_vectors WHERE kind = 'program'"
        )
        program_vec = {r["id"]: np.asarray(r["v"], dtype=np.float64) for r in rows}
        enrolled = Counter(p for _, p, _, _ in w.enrollments)
        hits = dict.fromkeys(NAMES, 0)
        rr = dict.fromkeys(NAMES, 0.0)
        among = 0
        weights = replace(recommend.CONTENT, learned=1.0)
        for athlete, program in sorted(hidden):
            found = await graph.program_neighbourhood(athlete, limit=limits.match_candidates)
            assert found is not None
            if not found.candidates:  # as the resolver: the nearest options instead
                near = await collab.nearest_programs(
                    db.pool, athlete, limit=limits.match_candidates
                )
                found = ProgramNeighbourhood(
                    found.athlete,
                    tuple(
                        ProgramCandidate(
                            ProgramInfo(p.id, p.sport, p.level, p.coach_id), p.skills, ()
                        )
                        for p in near
                    ),
                )
            among += program in {c.info.id for c in found.candidates}
            query = query_vector(await collab.match_vectors(db.pool, athlete, []))
            learned: dict[int, float] = {}
            if query is not None:
                for c in found.candidates:
                    v = program_vec.get(c.info.id)
                    if v is not None and float(np.linalg.norm(v)) > 0:
                        learned[c.info.id] = float(query @ (v / np.linalg.norm(v)))
            mine = set(found.athlete.programs)
            room = [p for p in w.programs if p not in mine]
            ranked = {
                "recommendPrograms": [m.id for m in recommend.rank_programs(found, 10)],
                "recommendPrograms + learned": [
                    m.id for m in recommend.rank_programs(found, 10, learned, weights)
                ],
                "popularity": sorted(room, key=lambda p: (-enrolled[p], p))[:10],
                "random": rng.sample(room, min(10, len(room))),
            }
            for name, top in ranked.items():
                if program in top:
                    hits[name] += 1
                    rr[name] += 1 / (top.index(program) + 1)
        n = max(1, len(hidden))
        print(
            f"\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  python -m "
            f"benchmarks.programs_quality --coaches {args.coaches} --athletes {args.athletes} "
            f"--enrollments {args.enrollments} --seed {args.seed}"
        )
        print(
            f"{len(w.programs)} programs, {len(w.enrollments) + len(hidden)} enrollments, "
            f"{len(hidden)} held out; the held-out program among the candidates ranked for "
            f"{among / n:.0%}\n"
        )
        print("| ranking | hit@10 | MRR@10 |\n|---|---|---|")
        for name in NAMES:
            print(f"| {name} | {hits[name] / n:.3f} | {rr[name] / n:.3f} |")
        print(f"\ntotal run {time.perf_counter() - began:.0f} s (shared 2-core machine)")
    finally:
        await db.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    world_options(parser)
    parser.add_argument("--seed", type=int, default=17)
    asyncio.run(main(parser.parse_args()))
