"""Does matchCoaches find the coaches athletes actually chose?

    python benchmarks/match_quality.py [--coaches 2000 --athletes 40000 --hide 0.2]

Seeds data whose assignments come from the generator's own process (sport, goals, city,
capacity, noise; it never calls the scoring code), hides a share of the assignments, projects
the rest into the networkx graph, and asks the scorer for each hidden athlete's coaches.
The learned blend ("blended") ranks with the weights the vector job fits on the records left
(graph/blend.py; the hidden assignments are not among them). Reports hit-rate@10 and MRR
beside a popularity baseline (the most-assigned coaches of the
athlete's sport that still have room) and random coaches of the sport with room.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from benchmarks.common import seeded
from coachgraph.config import Limits
from coachgraph.graph import blend, recommend
from coachgraph.graph.collab import CollabVectors, learned_candidates
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores.db import Database


async def main(args: argparse.Namespace) -> None:
    server, db, _ = await seeded(
        "quality", coaches=args.coaches, athletes=args.athletes, seed=args.seed
    )
    try:
        rows = await db.pool.fetch("SELECT coach_id, athlete_id FROM coach_athletes ORDER BY 1, 2")
        rng = random.Random(args.seed)
        hidden = rng.sample([(r[0], r[1]) for r in rows], int(len(rows) * args.hide))
        hidden_set = set(hidden)
        # hidden from the records while the projection and the vectors are built (the vectors
        # read the records), restored at the end
        await hide(db, hidden, restore=False)
        try:
            graph = MemoryGraph()
            await Projector(db, graph, name="bench").rebuild()
            limits = Limits()
            store = CollabVectors(
                db,
                dims=limits.collab_dims,
                chunk=limits.collab_rebuild_chunk,
                half_life_days=limits.collab_half_life_days,
            )
            await store.rebuild()
            # the blend's weights as the vector job fits them on the records: the training
            # part (the hidden assignments are not in them), its own latest assignments held out
            started = time.perf_counter()
            fitted = await blend.fit_for(db, limits)
            print(
                f"blend fitted on the records in {time.perf_counter() - started:.1f} s "
                f"({fitted.samples} held out): {fitted.reason}\n  grid: "
                + ", ".join(
                    f"learned {g['learned']}/similar {g['similar']}: {g['hit']:.3f}"
                    for g in fitted.grid
                )
            )
            await evaluate(
                args, db, graph, store, rows, hidden, hidden_set, rng, blend.weights_of(fitted)
            )
        finally:
            await hide(db, hidden, restore=True)
    finally:
        await db.close()
        await server.stop()


async def hide(db: Database, hidden: list[tuple[int, int]], *, restore: bool) -> None:
    coaches = [c for c, _ in hidden]
    athletes = [a for _, a in hidden]
    async with db.transaction() as conn:
        if restore:
            await conn.execute(
                "INSERT INTO coach_athletes (coach_id, athlete_id) "
                "SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING",
                coaches,
                athletes,
            )
        else:
            await conn.execute(
                "DELETE FROM coach_athletes WHERE (coach_id, athlete_id) IN "
                "(SELECT * FROM unnest($1::bigint[], $2::bigint[]))",
                coaches,
                athletes,
            )
        await conn.execute(
            "UPDATE coaches c SET active_athlete_count = "
            "(SELECT count(*) FROM coach_athletes ca WHERE ca.coach_id = c.id) "
            "WHERE c.id = ANY($1::bigint[])",
            coaches,
        )
        await conn.execute("TRUNCATE collab_vectors, collab_links, collab_rebuild")


async def evaluate(
    args: argparse.Namespace,
    db: Database,
    graph: MemoryGraph,
    store: CollabVectors,
    rows: list[Any],
    hidden: list[tuple[int, int]],
    hidden_set: set[tuple[int, int]],
    rng: random.Random,
    fitted: recommend.Weights,
) -> None:
    visible = Counter(c for c, a in (tuple(r) for r in rows) if (c, a) not in hidden_set)
    by_sport: dict[str, list[int]] = {}
    for coach in graph.coaches.values():
        for sport in coach.sports:
            by_sport.setdefault(sport, []).append(coach.id)

    weights = fitted
    if args.learned is not None or args.similar is not None:  # trying other blends
        weights = replace(
            weights,
            learned=weights.learned if args.learned is None else args.learned,
            similar=weights.similar if args.similar is None else args.similar,
        )
    names = ("blended", "coachgraph", "popularity", "random")
    hits = dict.fromkeys(names, 0)
    rr = dict.fromkeys(names, 0.0)
    started = time.perf_counter()
    for coach_id, athlete_id in hidden:
        found = await graph.coach_neighbourhood(athlete_id, limit=Limits().match_candidates)
        assert found is not None
        ours = [m.id for m in recommend.rank_coaches(found, 10, None, recommend.CONTENT)]
        # as matchCoaches ranks since issue 17
        nearest = await learned_candidates(db.pool, athlete_id, limit=Limits().collab_candidates)
        wider = await graph.coach_neighbourhood(
            athlete_id, limit=Limits().match_candidates, include=nearest
        )
        assert wider is not None
        learned = await store.similarity(athlete_id, [c.info.id for c in wider.candidates])
        blended = [
            m.id
            for m in (
                recommend.rank_coaches(wider, 10, learned, weights)
                if weights.learned > 0
                else recommend.rank_coaches(found, 10, None, weights)  # as matchCoaches does
            )
        ]
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
            ("blended", blended),
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
        f"{args.coaches} --athletes {args.athletes} --hide {args.hide} --seed {args.seed}  "
        f"({time.strftime('%H:%M', time.gmtime())} UTC)"
    )
    print(
        f"blend: cover {weights.cover}, fit {weights.fit}, similar {weights.similar}, "
        f"city {weights.city}, learned {weights.learned}"
    )
    print(f"{len(rows)} assignments, {n} hidden; scored in {elapsed:.1f} s\n")
    print("| ranking | hit-rate@10 | MRR@10 |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {hits[name] / n:.3f} | {rr[name] / n:.3f} |")
    ratio = hits["coachgraph"] / max(1, hits["popularity"])
    print(f"\ncoachgraph / popularity hit-rate@10: {ratio:.2f}x (target >= 2x)")
    print(
        f"blended / coachgraph (content) hit-rate@10: {hits['blended'] / max(1, hits['coachgraph']):.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--coaches", type=int, default=2000)
    parser.add_argument("--athletes", type=int, default=40_000)
    parser.add_argument("--hide", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument(
        "--learned", type=float, help="the blend's learned weight (default: as fitted)"
    )
    parser.add_argument("--similar", type=float, help="the blend's similar-athletes weight")
    asyncio.run(main(parser.parse_args()))
