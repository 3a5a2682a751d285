"""A persistent graph (the Neo4j backend on a real Bolt server) survives a restart of the app:
the next start resumes from the offset stored in projection_offsets and applies only the events
written since, instead of rebuilding the projection from scratch."""

from __future__ import annotations

from neo4j import AsyncDriver

from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database
from tests.factories import Factory
from tests.graph.conftest import make_graph

NAME = "graph:neo4j:resume-test"


async def coach_ids(graph: GraphStore) -> set[int]:
    return {int(n[1]) for n in (await graph.snapshot()).nodes if n[0] == "Coach"}  # type: ignore[call-overload]


async def test_neo4j_resumes_from_its_stored_offset(
    db: Database, factory: Factory, bolt_driver: AsyncDriver
) -> None:
    await db.pool.execute("DELETE FROM projection_offsets WHERE name = $1", NAME)
    before = [await factory.coach(name=f"Before {i}") for i in range(3)]
    graph = await make_graph("neo4j", bolt_driver)
    assert isinstance(graph, Neo4jGraph)
    try:
        # first start: no offset yet, so the graph is built and the offset stored
        first = Projector(db, graph, name=NAME)
        await first.prepare()
        await first.catch_up()
        stored = await graph_source.load_offset(db.pool, name=NAME)
        assert stored is not None and stored == first.position
        assert await coach_ids(graph) == {c.id for c in before}
        await first.stop()

        # a node lost behind the projector's back: a rebuild would bring it back
        await graph._run("MATCH (c:Coach {id: $id}) DETACH DELETE c", id=before[0].id)
        after = [await factory.coach(name=f"After {i}") for i in range(2)]
        new_events = (await graph_source.lag(db.pool, position=stored))[0]
        assert new_events == 2

        # second start: a new projector (as a new process would make) on the same graph
        second = Projector(db, graph, name=NAME)
        await second.prepare()
        assert second.position == stored  # resumed, not rebuilt
        assert await second.run_once() == new_events  # only what was written since
        assert await second.run_once() == 0
        assert await coach_ids(graph) == {before[1].id, before[2].id} | {c.id for c in after}
        now = await graph_source.load_offset(db.pool, name=NAME)
        assert now is not None and now > stored and now == second.position
        assert (await second.lag()).pending == 0
    finally:
        await graph.close()
        await db.pool.execute("DELETE FROM projection_offsets WHERE name = $1", NAME)
