"""Does matchCoaches find the coaches athletes actually chose?

    python benchmarks/match_quality.py [--coaches 2000 --athletes 40000 --hide 0.2]

Seeds data whose assignments come from the generator's own process (sport, goals, city,
capacity, noise; it never calls the scoring code), hides a share of the assignments, projects
the rest into the networkx graph, and asks the scorer for each hidden athlete's coaches.
Reports hit-rate@10 and MRR beside a popularity baseline (the most-assigned coaches of the
athlete's sport that still have room) and random coaches of the sport with room.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter

from benchmarks.common import seeded
from coachgraph.config import Limits
from coachgraph.graph import recommend
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector


async def main(args: argparse.Namespace) -> None:
    server, db, _ = await seeded(
        "quality", coaches=args.coaches, athletes=args.athletes, seed=args.seed
    )
    try:
        rows = await db.pool.fetch("SELECT coach_id, athlete_id FROM coach_athletes ORDER BY 1, 2")
        rng = random.Random(args.seed)
        hidden = rng.sample([(r[0], r[1]) for r in rows], int(len(rows) * args.hide))
        hidden_set = set(hidden)
        graph = MemoryGraph()
        await Projector(db, graph, name="bench").rebuild()
        # hide them in the projection only: the records stay as they were
        for coach_id, athlete_id in hidden:
            node_c, node_a = (coach_id << 3) | 1, (athlete_id << 3) | 2
            graph.rel["COACHES"].remove_edge(node_c, node_a)
            info = graph.coaches[coach_id]
            graph.coaches[coach_id] = type(info)(
                info.id, info.sports, info.city, info.capacity, info.active - 1
            )
        visible = Counter(c for c, a in (tuple(r) for r in rows) if (c, a) not in hidden_set)
        by_sport: dict[str, list[int]] = {}
        for coach in graph.coaches.values():
            for sport in coach.sports:
                by_sport.setdefault(sport, []).append(coach.id)

        hits = {"coachgraph": 0, "popularity": 0, "random": 0}
        rr = {"coachgraph": 0.0, "popularity": 0.0, "random": 0.0}
        started = time.perf_counter()
        for coach_id, athlete_id in hidden:
            found = await graph.coach_neighbourhood(athlete_id, limit=Limits().match_candidates)
            assert found is not None
            ours = [m.id for m in recommend.rank_coaches(found, 10)]
            sport = found.athlete.info.sport
            room = [
                c
                for c in by_sport[sport]
                if graph.coaches[c].active < graph.coaches[c].capacity
                and c not in found.athlete.coaches
            ]
            popular = sorted(room, key=lambda c: (-visible[c], c))[:10]
            randomly = rng.sample(room, min(10, len(room)))
            for name, ranked in (
                ("coachgraph", ours),
                ("popularity", popular),
                ("random", randomly),
            ):
                if coach_id in ranked:
                    hits[name] += 1
                    rr[name] += 1.0 / (ranked.index(coach_id) + 1)
        elapsed = time.perf_counter() - started
        n = len(hidden)
        print(
            f"\n{time.strftime('%Y-%m-%d')}  python benchmarks/match_quality.py --coaches "
            f"{args.coaches} --athletes {args.athletes} --hide {args.hide} --seed {args.seed}"
        )
        print(f"{len(rows)} assignments, {n} hidden; scored in {elapsed:.1f} s\n")
        print("| ranking | hit-rate@10 | MRR@10 |")
        print("|---|---|---|")
        for name in ("coachgraph", "popularity", "random"):
            print(f"| {name} | {hits[name] / n:.3f} | {rr[name] / n:.3f} |")
        ratio = hits["coachgraph"] / max(1, hits["popularity"])
        print(f"\ncoachgraph / popularity hit-rate@10: {ratio:.2f}x (target >= 2x)")
    finally:
        await db.close()
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--coaches", type=int, default=2000)
    parser.add_argument("--athletes", type=int, default=40_000)
    parser.add_argument("--hide", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=21)
    asyncio.run(main(parser.parse_args()))
