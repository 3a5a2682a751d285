"""A start that rebuilds the in-memory graph does not rebuild a persistent search projection:
the search catches up from its own stored offset."""

from __future__ import annotations

from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector
from coachgraph.search.postgres import PostgresSearch
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database
from tests.factories import Factory


async def start(db: Database) -> tuple[Projector, MemoryGraph]:
    """What the API does at start: a fresh memory graph, the search as a sink."""
    graph = MemoryGraph()
    projector = Projector(db, graph, name="graph:memory", sinks=[PostgresSearch(db)])
    await projector.prepare()
    await projector.catch_up()
    return projector, graph


async def test_restart_catches_search_up_instead_of_rebuilding(
    db: Database, factory: Factory
) -> None:
    await db.pool.execute("DELETE FROM projection_offsets WHERE name = 'search:postgres'")
    first = await factory.coach(name="Before Restart")
    await start(db)  # no offset yet: the search is built, and its offset stored
    stored = await graph_source.load_offset(db.pool, name="search:postgres")
    assert stored is not None
    # a document lost behind the projector's back: a rebuild would bring it back
    await db.pool.execute("DELETE FROM search_documents WHERE kind = 'COACH' AND id = $1", first.id)
    later = await factory.coach(name="While Down")
    projector, graph = await start(db)
    ids = {r["id"] for r in await db.pool.fetch("SELECT id FROM search_documents")}
    assert later.id in ids  # caught up from its offset
    assert first.id not in ids  # ... and not rebuilt
    assert first.id in graph.coaches and later.id in graph.coaches  # the graph was rebuilt
    now = await graph_source.load_offset(db.pool, name="search:postgres")
    assert now is not None and now > stored and now == projector.position
