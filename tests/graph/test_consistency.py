"""Both backends agree on seeded data; the projector survives being stopped anywhere."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from neo4j import AsyncDriver

from coachgraph.graph import recommend
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.services import seed_database
from coachgraph.stores import athletes, coaches
from coachgraph.stores.db import Database
from tests.graph.conftest import make_graph, projector


async def build(db: Database, graph: GraphStore) -> None:
    p = projector(db, graph)
    await p.rebuild()
    await p.catch_up()


async def test_same_rankings_and_reasons_on_both_backends(
    db: Database, bolt_driver: AsyncDriver
) -> None:
    await seed_database(db, coaches=40, athletes=300, seed_value=5, show_progress=False)
    memory = MemoryGraph()
    bolt = await make_graph("neo4j", bolt_driver)
    try:
        await build(db, memory)
        await build(db, bolt)
        assert await memory.snapshot() == await bolt.snapshot()
        athlete_ids = [
            r["id"] for r in await db.pool.fetch("SELECT id FROM athletes ORDER BY id LIMIT 25")
        ]
        coach_ids = [
            r["id"] for r in await db.pool.fetch("SELECT id FROM coaches ORDER BY id LIMIT 10")
        ]
        compared = 0
        for aid in athlete_ids:
            capped_a = await memory.coach_neighbourhood(aid, limit=3)
            assert capped_a == await bolt.coach_neighbourhood(aid, limit=3)  # same cap order
            a = await memory.coach_neighbourhood(aid, limit=300)
            b = await bolt.coach_neighbourhood(aid, limit=300)
            assert a == b
            assert a is not None and recommend.rank_coaches(a, 10) == recommend.rank_coaches(b, 10)  # type: ignore[arg-type]
            compared += bool(a.candidates)
            pa = await memory.program_neighbourhood(aid, limit=100)
            pb = await bolt.program_neighbourhood(aid, limit=100)
            assert pa == pb
        for cid in coach_ids:
            a2 = await memory.roster_neighbourhood(cid, limit=300)
            b2 = await bolt.roster_neighbourhood(cid, limit=300)
            assert a2 == b2
        assert compared >= 10  # the comparison was about real candidate lists
    finally:
        await bolt.close()


async def write_load(db: Database, rounds: int, rng: random.Random) -> None:
    """Assignments, unassignments, goal and skill changes, as the API would make them."""
    coach_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM coaches")]
    athlete_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM athletes")]
    skill_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM skills")]
    for _ in range(rounds):
        coach, athlete = rng.choice(coach_ids), rng.choice(athlete_ids)
        try:
            async with db.transaction() as conn:
                action = rng.randrange(4)
                if action == 0:
                    await coaches.assign(conn, coach_id=coach, athlete_id=athlete)
                elif action == 1:
                    await coaches.unassign(conn, coach_id=coach, athlete_id=athlete)
                elif action == 2:
                    await athletes.set_goals(
                        conn, athlete_id=athlete, skill_ids=rng.sample(skill_ids, 2)
                    )
                else:
                    await coaches.set_skill(
                        conn,
                        coach_id=coach,
                        skill_id=rng.choice(skill_ids),
                        level=rng.randint(1, 5),
                    )
        except Exception:  # Conflict and the like: the load goes on, as clients would
            continue
        await asyncio.sleep(0)


class Crash(Exception):
    """The process dies here."""


def crash_between_statements(graph: Neo4jGraph, rng: random.Random) -> None:
    """Make the Bolt backend die after a random number of statements, before or after one
    has run, so a batch stops half applied (cancelling mid-Bolt-message would also break the
    test server's connection, which is not what is under test)."""
    run = graph._run
    budget = {"left": rng.randint(1, 12)}

    async def faulty(query: str, **params: Any) -> list[dict[str, Any]]:
        budget["left"] -= 1
        if budget["left"] == 0:
            budget["left"] = rng.randint(1, 12)
            if rng.random() < 0.5:
                await run(query, **params)  # the write lands, the process dies after it
            raise Crash
        return await run(query, **params)

    graph._run = faulty  # type: ignore[method-assign]


async def test_projector_stopped_anywhere_converges(db: Database, bolt_driver: AsyncDriver) -> None:
    await seed_database(db, coaches=15, athletes=120, seed_value=9, show_progress=False)
    for kind in ("networkx", "neo4j"):
        rng = random.Random(42)
        graph = await make_graph(kind, bolt_driver)
        p = projector(db, graph)
        await p.rebuild()
        if isinstance(graph, Neo4jGraph):
            crash_between_statements(graph, rng)
        load = asyncio.create_task(write_load(db, 150, rng))
        stops = 0
        while not load.done() or stops < 12:
            task = asyncio.create_task(p.catch_up())
            await asyncio.sleep(rng.uniform(0, 0.03))
            if kind == "networkx":
                task.cancel()  # stop mid-batch: between reads, graph writes, position saves
            try:
                await task
            except (asyncio.CancelledError, Crash):
                stops += 1
            else:
                await asyncio.sleep(0.01)  # caught up: let the load write more
            # a restart: a new projector resuming from the position the old one recorded
            resumed = projector(db, graph)
            resumed.position = p.position
            p = resumed
        await load
        if isinstance(graph, Neo4jGraph):
            graph._run = Neo4jGraph._run.__get__(graph)  # type: ignore[method-assign]
        await p.catch_up()
        fresh = await make_graph(kind, bolt_driver)
        await build(db, fresh)
        assert await graph.snapshot() == await fresh.snapshot(), kind
        assert stops >= 12
        await graph.close()
        await fresh.close()
