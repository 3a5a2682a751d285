"""Does the learned collaborative signal find coaches that profiles don't explain? (issue 17)

    python benchmarks/match_learned.py [--coaches 300 --athletes 6000 --candidates 30]

A generator whose assignment process the scorer does not share (it never calls coachgraph's
scoring code):
* every athlete and coach has a hidden training preference, one of `--styles` (6);
* each style favours 10 of the 60 goal skills; an athlete's 3 goals come from its style's
  ten with probability `--visible` (0.35), else from all 60: the preference only partly
  shows in its goals. A coach teaches 8 skills, half from its style's ten;
* each athlete enrolls in 2 programs (2 per coach, developing 3 of its coach's skills): one
  led by a coach of its own style with probability 0.5, else any; it drops a program of
  another style with probability 0.6 (0.15 of its own), completes a third of the rest;
* athletes (in random order, 20 % of them twice) choose the coach with room that maximises
  1.5 * [same preference] + 1.0 * (share of its goals the coach teaches)
  + 0.5 * [same city] + 0.7 * Gumbel noise, over every coach of the sport.
One assignment of 20 % of the athletes is held out (never written to the records); the rest
are projected into the networkx graph and the vectors are built from the records. For each
held-out pair the rankings are asked for the athlete's top 10:
  popularity       - the most-assigned coaches with room
  content (today)  - rank_coaches with the content weights (the ranking before issue 17)
  content (generator's weights) - 1.0 * coverage + 0.5 * same city over every coach with room
  learned only     - the vectors' cosine alone, over the graph's candidates
  blended (fitted) - rank_coaches as matchCoaches calls it, with the weights the vector job
                     fits on the records (graph/blend.py: the training part only, its own
                     latest assignments held out), content weights if it finds no gain
  blended (learned 1.0) - rank_coaches with recommend.WEIGHTS (learned 1.0, similar 0), the
                     blend measured by hand in the first pass, for reference
  oracle           - the generator's utility without its noise, knowing the preference
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from coachgraph.config import Limits
from coachgraph.graph import blend, recommend
from coachgraph.graph.collab import CollabVectors, learned_candidates
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import CoachNeighbourhood
from coachgraph.graph.projector import Projector
from coachgraph.stores import collab
from coachgraph.stores.collab_weights import Fitted
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

SPORT = "running"
GOAL_SKILLS = 60
CITIES = 20
TABLES = (
    "collab_vectors, collab_links, collab_rebuild, collab_blend_weights, projection_offsets, "
    "outbox, enrollments, coach_athletes, program_skills, programs, athlete_goals, athlete_skills, coach_skills, "
    "skill_prerequisites, skills, athletes, coaches"
)


@dataclass
class World:
    coach_style: dict[int, int] = field(default_factory=dict)
    coach_city: dict[int, int] = field(default_factory=dict)
    coach_skills: dict[int, dict[int, int]] = field(default_factory=dict)
    capacity: dict[int, int] = field(default_factory=dict)
    athlete_style: dict[int, int] = field(default_factory=dict)
    athlete_city: dict[int, int] = field(default_factory=dict)
    athlete_goals: dict[int, list[int]] = field(default_factory=dict)
    athlete_level: dict[int, int] = field(default_factory=dict)
    programs: dict[int, tuple[int, list[int], int]] = field(default_factory=dict)
    enrollments: list[tuple[int, int, str, datetime]] = field(default_factory=list)
    assignments: list[tuple[int, int, datetime]] = field(default_factory=list)
    hidden: list[tuple[int, int]] = field(default_factory=list)


def generate(args: argparse.Namespace, seed: int) -> World:
    rng = random.Random(seed)
    w = World()
    now = datetime.now(UTC)
    pool = {s: list(range(1 + s * 10, 11 + s * 10)) for s in range(args.styles)}
    all_goals = list(range(1, GOAL_SKILLS + 1))
    pid = 0
    for c in range(1, args.coaches + 1):
        style = rng.randrange(args.styles)
        w.coach_style[c], w.coach_city[c] = style, rng.randrange(CITIES)
        taught = set(rng.sample(pool[style % len(pool)], 4))
        while len(taught) < 8:
            taught.add(rng.choice(all_goals))
        w.coach_skills[c] = {s: rng.randint(1, 5) for s in taught}
        w.capacity[c] = 40
        for _ in range(2):
            pid += 1
            w.programs[pid] = (c, rng.sample(sorted(taught), 3), rng.randint(1, 5))
    by_style: dict[int, list[int]] = {}
    for p, (c, _, _) in w.programs.items():
        by_style.setdefault(w.coach_style[c], []).append(p)
    program_ids = list(w.programs)
    for a in range(1, args.athletes + 1):
        style = rng.randrange(args.styles)
        w.athlete_style[a], w.athlete_city[a] = style, rng.randrange(CITIES)
        w.athlete_level[a] = rng.randint(1, 5)
        goals: set[int] = set()
        while len(goals) < 3:
            goals.add(
                rng.choice(pool[style]) if rng.random() < args.visible else rng.choice(all_goals)
            )
        w.athlete_goals[a] = sorted(goals)
        chosen: set[int] = set()
        while len(chosen) < args.enrollments:
            own = rng.random() < 0.5 and by_style.get(style)
            chosen.add(rng.choice(by_style[style]) if own else rng.choice(program_ids))
        for p in sorted(chosen):
            mine = w.coach_style[w.programs[p][0]] == style
            if rng.random() < (0.15 if mine else 0.6):
                status = "DROPPED"
            else:
                status = "COMPLETED" if rng.random() < 1 / 3 else "ACTIVE"
            w.enrollments.append((a, p, status, now - timedelta(days=rng.randrange(700))))
    # the choices, vectorised over coaches (the same utility as `utility`, plus the noise)
    ids = np.array(sorted(w.coach_style))
    c_style = np.array([w.coach_style[c] for c in ids])
    c_city = np.array([w.coach_city[c] for c in ids])
    teaches = np.zeros((len(ids), GOAL_SKILLS + 1))
    for row, c in enumerate(ids):
        teaches[row, list(w.coach_skills[c])] = 1.0
    room = np.array([w.capacity[c] for c in ids], dtype=np.int64)
    noise = np.random.default_rng(seed)
    order = list(w.athlete_style)
    rng.shuffle(order)
    order += rng.sample(order, len(order) // 5)
    taken: dict[int, set[int]] = {}
    for a in order:
        goals_a = w.athlete_goals[a]
        u = (
            1.5 * (c_style == w.athlete_style[a])
            + teaches[:, goals_a].sum(axis=1) / len(goals_a)
            + 0.5 * (c_city == w.athlete_city[a])
            + args.noise * noise.gumbel(size=len(ids))
        )
        u[room <= 0] = -np.inf
        for row in taken.get(a, ()):
            u[row] = -np.inf
        best = int(np.argmax(u))
        if not np.isfinite(u[best]):
            continue
        room[best] -= 1
        taken.setdefault(a, set()).add(best)
        w.assignments.append((int(ids[best]), a, now - timedelta(days=rng.randrange(700))))
    per_athlete: dict[int, list[int]] = {}
    for c, a, _ in w.assignments:
        per_athlete.setdefault(a, []).append(c)
    held = rng.sample(sorted(per_athlete), int(len(per_athlete) * args.hide))
    w.hidden = [(rng.choice(per_athlete[a]), a) for a in held]
    return w


def utility(w: World, a: int, c: int, *, style: bool = True) -> float:
    goals = w.athlete_goals[a]
    cover = sum(1 for g in goals if g in w.coach_skills[c]) / len(goals)
    same = w.athlete_city[a] == w.coach_city[c]
    return 1.5 * (style and w.athlete_style[a] == w.coach_style[c]) + cover + 0.5 * same


def inferred(w: World, args: argparse.Namespace, a: int, c: int) -> float:
    """The generator's utility with the athlete's preference inferred from its goals alone
    (Bayes, knowing how goals are drawn) and the coach's known: the best a ranking can do
    from the athlete's profile when every coach's preference has been learned."""
    likelihood = []
    for s in range(args.styles):
        p = 1.0
        for g in w.athlete_goals[a]:
            in_pool = 1 + s * 10 <= g <= 10 + s * 10
            p *= args.visible * in_pool / 10 + (1 - args.visible) / GOAL_SKILLS
        likelihood.append(p)
    posterior = likelihood[w.coach_style[c]] / sum(likelihood)
    return 1.5 * posterior + utility(w, a, c, style=False)


async def write(db: Database, w: World) -> None:
    hidden = set(w.hidden)
    visible = [(c, a, t) for c, a, t in w.assignments if (c, a) not in hidden]
    active = Counter(c for c, _, _ in visible)
    async with db.transaction() as conn:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        await conn.copy_records_to_table(
            "skills",
            records=[(s, f"goal-{s}", f"Goal {s}", SPORT) for s in range(1, GOAL_SKILLS + 1)],
            columns=["id", "slug", "name", "sport"],
        )
        await conn.copy_records_to_table(
            "coaches",
            records=[
                (
                    c,
                    f"Coach {c}",
                    [SPORT],
                    f"City {w.coach_city[c]}",
                    "UTC",
                    w.capacity[c],
                    active[c],
                )
                for c in w.coach_style
            ],
            columns=[
                "id",
                "name",
                "sports",
                "city",
                "timezone",
                "capacity",
                "active_athlete_count",
            ],
        )
        await conn.copy_records_to_table(
            "coach_skills",
            records=[
                (c, s, lv) for c, taught in w.coach_skills.items() for s, lv in taught.items()
            ],
            columns=["coach_id", "skill_id", "level"],
        )
        await conn.copy_records_to_table(
            "athletes",
            records=[
                (
                    a,
                    f"Athlete {a}",
                    SPORT,
                    f"City {w.athlete_city[a]}",
                    "UTC",
                    w.athlete_level[a],
                    True,
                )
                for a in w.athlete_style
            ],
            columns=["id", "name", "sport", "city", "timezone", "level", "looking_for_coach"],
        )
        await conn.copy_records_to_table(
            "athlete_goals",
            records=[(a, g) for a, goals in w.athlete_goals.items() for g in goals],
            columns=["athlete_id", "skill_id"],
        )
        await conn.copy_records_to_table(
            "programs",
            records=[(p, c, f"Program {p}", SPORT, lv, 8) for p, (c, _, lv) in w.programs.items()],
            columns=["id", "coach_id", "title", "sport", "level", "duration_weeks"],
        )
        await conn.copy_records_to_table(
            "program_skills",
            records=[(p, s) for p, (_, skills, _) in w.programs.items() for s in skills],
            columns=["program_id", "skill_id"],
        )
        await conn.copy_records_to_table(
            "enrollments",
            records=w.enrollments,
            columns=["athlete_id", "program_id", "status", "enrolled_at"],
        )
        await conn.copy_records_to_table(
            "coach_athletes", records=visible, columns=["coach_id", "athlete_id", "assigned_at"]
        )


@dataclass
class Case:
    coach: int
    athlete: int
    found: CoachNeighbourhood
    content: CoachNeighbourhood  # the graph's candidates only, as before issue 17
    learned: dict[int, float]
    room: list[int]


RANKINGS = (
    "popularity",
    "content (today)",
    "content (generator's weights)",
    "learned only",
    "blended (fitted)",
    "blended (learned 1.0)",
    "oracle (preference inferred from goals)",
    "oracle",
)


def scored(
    cases: list[Case],
    w: World,
    visible: Counter[int],
    weights: recommend.Weights,
    args: argparse.Namespace,
) -> dict[str, tuple[float, float]]:
    hits: Counter[str] = Counter()
    rr: dict[str, float] = dict.fromkeys(RANKINGS, 0.0)
    for case in cases:
        a = case.athlete
        ranked = {
            "popularity": sorted(case.room, key=lambda c: (-visible[c], c))[:10],
            "content (today)": [
                m.id for m in recommend.rank_coaches(case.content, 10, None, recommend.CONTENT)
            ],
            "content (generator's weights)": sorted(
                case.room, key=lambda c: (-utility(w, a, c, style=False), c)
            )[:10],
            "learned only": sorted(case.learned, key=lambda c: (-case.learned[c], c))[:10],
            "blended (fitted)": [
                m.id
                for m in (
                    recommend.rank_coaches(case.found, 10, case.learned, weights)
                    if weights.learned > 0
                    else recommend.rank_coaches(case.content, 10, None, weights)
                )
            ],
            "blended (learned 1.0)": [
                m.id
                for m in recommend.rank_coaches(case.found, 10, case.learned, recommend.WEIGHTS)
            ],
            "oracle (preference inferred from goals)": sorted(
                case.room, key=lambda c: (-inferred(w, args, a, c), c)
            )[:10],
            "oracle": sorted(case.room, key=lambda c: (-utility(w, a, c), c))[:10],
        }
        for name, top in ranked.items():
            if case.coach in top:
                hits[name] += 1
                rr[name] += 1 / (top.index(case.coach) + 1)
    n = max(1, len(cases))
    return {name: (hits[name] / n, rr[name] / n) for name in RANKINGS}


async def world_cases(
    db: Database, args: argparse.Namespace, seed: int, *, measure: bool
) -> tuple[World, list[Case], Counter[int], dict[str, float], Fitted]:
    started = time.perf_counter()
    w = generate(args, seed)
    await write(db, w)
    generated = time.perf_counter() - started
    graph = MemoryGraph()
    await Projector(db, graph, name="bench").rebuild()
    limits = Limits()
    store = CollabVectors(
        db,
        dims=args.dims,
        chunk=limits.collab_rebuild_chunk,
        half_life_days=limits.collab_half_life_days,
    )
    tracemalloc.start()
    started = time.perf_counter()
    await store.rebuild()
    build = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows, size = await collab.size(db.pool)
    stats = {"generate": generated, "build": build, "peak": peak, "rows": rows, "bytes": size}
    # the blend's weights, as the vector job fits them on the records (the training part)
    started = time.perf_counter()
    fitted = await blend.fit_for(
        db,
        limits,
        dims=args.dims,
        candidates=args.candidates,
        learned_candidates=args.learned_candidates,
    )
    stats["fit"] = time.perf_counter() - started
    if measure:  # incremental cost: one athlete's event, re-applied after a real change
        sample = random.Random(seed).sample(sorted(w.athlete_style), 200)
        timings = []
        for a in sample:
            await db.pool.execute(
                "UPDATE enrollments SET status = 'DROPPED' WHERE athlete_id = $1", a
            )
            t = time.perf_counter()
            await store.apply({"athlete": {a}})
            timings.append(time.perf_counter() - t)
        timings.sort()
        stats["update_p50"] = timings[len(timings) // 2]
        stats["update_p95"] = timings[int(len(timings) * 0.95)]
        await store.rebuild()  # back to the generated behaviour
    visible = Counter(c for c, a, _ in w.assignments if (c, a) not in set(w.hidden))
    cases = []
    timings = []
    for coach, athlete in w.hidden:
        # as matchCoaches asks: the vectors' nearest coaches join the graph's candidates
        t = time.perf_counter()
        nearest = await learned_candidates(db.pool, athlete, limit=args.learned_candidates)
        found = await graph.coach_neighbourhood(athlete, limit=args.candidates, include=nearest)
        assert found is not None
        ids = [c.info.id for c in found.candidates]
        learned = await store.similarity(athlete, ids)
        recommend.rank_coaches(found, 10, learned, recommend.WEIGHTS)
        timings.append(time.perf_counter() - t)
        content_only = await graph.coach_neighbourhood(athlete, limit=args.candidates)
        assert content_only is not None
        room = [
            c
            for c, info in graph.coaches.items()
            if info.active < info.capacity and c not in found.athlete.coaches
        ]
        cases.append(Case(coach, athlete, found, content_only, learned, room))
    timings.sort()
    stats["rank_p50"] = timings[len(timings) // 2]
    stats["rank_p95"] = timings[int(len(timings) * 0.95)]
    return w, cases, visible, stats, fitted


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.gettempdir()) / "coachgraph-bench-learned"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg")
    db = await Database.connect(await server.start(), min_size=1, max_size=4)
    began = time.perf_counter()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        w, cases, visible, stats, fitted = await world_cases(db, args, args.seed, measure=True)
        chosen = blend.weights_of(fitted)
        results = scored(cases, w, visible, chosen, args)
        in_candidates = sum(
            1 for c in cases if c.coach in {x.info.id for x in c.content.candidates}
        )
        in_blend = sum(1 for c in cases if c.coach in {x.info.id for x in c.found.candidates})
        print(
            f"\n{time.strftime('%Y-%m-%d')}  python benchmarks/match_learned.py --coaches {args.coaches} "
            f"--athletes {args.athletes} --candidates {args.candidates} "
            f"--learned-candidates {args.learned_candidates} --dims {args.dims} "
            f"--visible {args.visible} --enrollments {args.enrollments} --noise {args.noise} "
            f"--seed {args.seed}  ({time.strftime('%H:%M', time.gmtime())} UTC)"
        )
        print(
            f"{len(w.assignments)} assignments, {len(cases)} held out; the true coach among the "
            f"graph's {args.candidates} candidates in {in_candidates / max(1, len(cases)):.0%}, "
            f"among those plus the vectors' {args.learned_candidates} nearest in "
            f"{in_blend / max(1, len(cases)):.0%}\n"
        )
        print("| ranking | hit@10 | MRR@10 |")
        print("|---|---|---|")
        for name in RANKINGS:
            hit, mrr = results[name]
            print(f"| {name} | {hit:.3f} | {mrr:.3f} |")
        print(
            f"\nblend fitted on the records ({fitted.samples} latest assignments held out, "
            f"{stats['fit']:.1f} s): cover {chosen.cover}, fit {chosen.fit}, similar "
            f"{chosen.similar}, city {chosen.city}, learned {chosen.learned}; {fitted.reason}"
        )
        print(
            "fit's grid (hit@10 / MRR@10 on its held-out assignments): "
            + ", ".join(
                f"learned {g['learned']}/similar {g['similar']}: {g['hit']:.3f}/{g['mrr']:.3f}"
                for g in fitted.grid
            )
        )
        content = results["content (today)"][0]
        fit_hit = results["blended (fitted)"][0]
        print(
            f"blended (fitted) / content (today): {fit_hit / max(content, 1e-9):.2f}x; "
            f"blended (fitted) / oracle: {fit_hit / max(results['oracle'][0], 1e-9):.2f}x; "
            f"learned 1.0 / content: "
            f"{results['blended (learned 1.0)'][0] / max(content, 1e-9):.2f}x"
        )
        print(
            f"vectors: {stats['rows']:,} rows, {stats['bytes'] / 2**20:.1f} MiB in PostgreSQL "
            f"(vectors + links), built in {stats['build']:.1f} s (peak Python memory "
            f"{stats['peak'] / 2**20:.1f} MiB); one athlete's event: p50 "
            f"{stats['update_p50'] * 1000:.1f} ms, p95 {stats['update_p95'] * 1000:.1f} ms; "
            f"ranking one athlete (nearest coaches, neighbourhood, similarities, scoring): p50 "
            f"{stats['rank_p50'] * 1000:.1f} ms, p95 {stats['rank_p95'] * 1000:.1f} ms; "
            f"total run {time.perf_counter() - began:.0f} s (shared 2-core machine)"
        )
    finally:
        await db.close()
        await server.stop()


def world_options(parser: argparse.ArgumentParser) -> None:
    """The latent-preference world's options (this benchmark's and programs_quality's)."""
    parser.add_argument("--coaches", type=int, default=300)
    parser.add_argument("--athletes", type=int, default=6000)
    parser.add_argument("--styles", type=int, default=6)
    parser.add_argument("--visible", type=float, default=0.35)
    parser.add_argument("--enrollments", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.7)
    parser.add_argument("--hide", type=float, default=0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    world_options(parser)
    parser.add_argument("--candidates", type=int, default=Limits().match_candidates)
    parser.add_argument("--learned-candidates", type=int, default=Limits().collab_candidates)
    parser.add_argument("--dims", type=int, default=Limits().collab_dims)
    parser.add_argument("--seed", type=int, default=17)
    asyncio.run(main(parser.parse_args()))
