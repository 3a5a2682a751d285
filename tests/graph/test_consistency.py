"""Both backends agree on seeded data; the projector survives being stopped anywhere."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from neo4j import AsyncDriver

from coachgraph.errors import Conflict
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


ACTIONS = ("assign", "unassign", "set_goals", "set_skill")


async def write_load(db: Database, rounds: int, rng: random.Random) -> Counter[str]:
    """Assignments, unassignments, goal and skill changes, as the API would make them; returns
    how many of each committed, and how many the state refused (`Conflict`: a coach at
    capacity, a pair already or not linked). Any other error fails the test."""
    coach_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM coaches")]
    athlete_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM athletes")]
    skill_ids = [r["id"] for r in await db.pool.fetch("SELECT id FROM skills")]
    done: Counter[str] = Counter()
    for _ in range(rounds):
        coach, athlete = rng.choice(coach_ids), rng.choice(athlete_ids)
        action = ACTIONS[rng.randrange(len(ACTIONS))]
        try:
            async with db.transaction() as conn:
                if action == "assign":
                    await coaches.assign(conn, coach_id=coach, athlete_id=athlete)
                elif action == "unassign":  # a pair that is linked: random ones rarely are
                    links = await conn.fetch("SELECT coach_id, athlete_id FROM coach_athletes")
                    if links:
                        coach, athlete = rng.choice(links)
                    await coaches.unassign(conn, coach_id=coach, athlete_id=athlete)
                elif action == "set_goals":
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
        except Conflict:  # refused by the current state, as a client would be: go on
            done["refused"] += 1
        else:
            done[action] += 1
        await asyncio.sleep(0)  # a turn for the projector between writes
    return done


async def postgres_edges(db: Database) -> set[tuple[str, int, int]]:
    """The relations the projection must hold, read from the records themselves."""
    queries = {
        "COACHES": "SELECT coach_id AS a, athlete_id AS b FROM coach_athletes",
        "WANTS": "SELECT athlete_id AS a, skill_id AS b FROM athlete_goals",
        "TEACHES": "SELECT coach_id AS a, skill_id AS b FROM coach_skills",
    }
    return {
        (relation, r["a"], r["b"])
        for relation, sql in queries.items()
        for r in await db.pool.fetch(sql)
    }


async def projected_edges(graph: GraphStore) -> set[tuple[str, int, int]]:
    snapshot = await graph.snapshot()
    relations = {"COACHES", "WANTS", "TEACHES"}
    return {
        (str(e[0]), int(e[1]), int(e[2]))  # type: ignore[call-overload]
        for e in snapshot.edges
        if e[0] in relations
    }


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
        outbox_before = await db.pool.fetchval("SELECT count(*) FROM outbox")
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
        done = await load
        # the load wrote: every kind of write committed, each with its one outbox event
        assert all(done[action] > 0 for action in ACTIONS), done
        assert sum(done.values()) == 150, done
        committed = sum(done[action] for action in ACTIONS)
        outbox_after = await db.pool.fetchval("SELECT count(*) FROM outbox")
        assert outbox_after - outbox_before == committed, (done, outbox_after - outbox_before)
        if isinstance(graph, Neo4jGraph):
            graph._run = Neo4jGraph._run.__get__(graph)  # type: ignore[method-assign]
        await p.catch_up()
        assert (await p.lag()).pending == 0
        assert await projected_edges(graph) == await postgres_edges(db), kind
        fresh = await make_graph(kind, bolt_driver)
        await build(db, fresh)
        assert await graph.snapshot() == await fresh.snapshot(), kind
        assert stops >= 12
        await graph.close()
        await fresh.close()
