"""Long-lived clients, opened in the app's lifespan and closed there."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from coachgraph.api.auth import resolve_secret
from coachgraph.api.ratelimit import RateLimiter
from coachgraph.config import Settings
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """What every request may use: settings, the database, the graph, the secret, the limiter."""

    settings: Settings
    db: Database
    jwt_secret: str
    limiter: RateLimiter
    graph: GraphStore
    projector: Projector
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        await self.projector.stop()
        await self.graph.close()
        await self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()


def graph_store(settings: Settings) -> GraphStore:
    """Neo4j when NEO4J_URI is set, else the in-memory networkx graph."""
    if settings.neo4j_uri:
        return Neo4jGraph(
            settings.neo4j_uri,
            user=settings.neo4j_user,
            password=settings.neo4j_password,
            database=settings.neo4j_database,
            write_batch=settings.neo4j_write_batch,
        )
    return MemoryGraph()


def projector_for(settings: Settings, db: Database, graph: GraphStore) -> Projector:
    persistent = graph.persistent
    name = (
        f"graph:{graph.name}:{settings.neo4j_database or 'default'}"
        if persistent
        else "graph:memory"
    )
    return Projector(
        db,
        graph,
        name=name,
        persistent=persistent,
        batch_size=settings.limits.projector_batch,
        poll_seconds=settings.projector_poll_seconds,
    )


async def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL, or a private cluster under the data dir when it is unset."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
    return await embedded.start(), embedded


async def open_resources(
    settings: Settings,
    *,
    create_secret: bool = False,
    count_statements: bool = False,
    start_projector: bool = True,
) -> Resources:
    """Connect, migrate, and hand back everything a request needs."""
    secret = resolve_secret(settings, create=create_secret)
    dsn, embedded = await database_url(settings)
    try:
        db = await Database.connect(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            count_statements=count_statements,
        )
    except BaseException:
        if embedded is not None:
            await embedded.stop()
        raise
    graph = graph_store(settings)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        await graph.start()
        projector = projector_for(settings, db, graph)
        await projector.prepare()
        await projector.catch_up()
        if start_projector:
            projector.start(dsn)
    except BaseException:
        await graph.close()
        await db.close()
        if embedded is not None:
            await embedded.stop()
        raise
    limits = settings.limits
    limiter = RateLimiter(per_minute=limits.rate_limit_per_minute, burst=limits.rate_limit_burst)
    return Resources(settings, db, secret, limiter, graph, projector, embedded)
