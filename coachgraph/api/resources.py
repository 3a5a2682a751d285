"""Long-lived clients, opened in the app's lifespan and closed there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from coachgraph.api.auth import resolve_secret
from coachgraph.api.ratelimit import Limiter
from coachgraph.config import Settings
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Projector
from coachgraph.media.local import LocalMediaStore
from coachgraph.media.model import MediaStore
from coachgraph.media.s3 import S3MediaStore
from coachgraph.resolvers.live import GRAPH_TOPIC
from coachgraph.resolvers.media import purge_stale
from coachgraph.retry import Backoff
from coachgraph.search.meili import MeiliSearch
from coachgraph.search.model import SearchIndex
from coachgraph.search.postgres import PostgresSearch
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import Migration, migrate
from coachgraph.subscriptions.broker import Broker, MemoryBroker
from coachgraph.subscriptions.redis import RedisBroker

log = logging.getLogger(__name__)


@dataclass
class Resources:
    """What every request may use: settings, the database, the graph, the secret, the limiter."""

    settings: Settings
    db: Database
    jwt_secret: str
    limiter: Limiter  # every door's rate limits (api/ratelimit.py)
    graph: GraphStore
    projector: Projector
    media: MediaStore
    broker: Broker
    search: SearchIndex
    exits: AsyncExitStack  # closes what was opened, last opened first

    async def close(self) -> None:
        await self.exits.aclose()


def graph_store(settings: Settings) -> GraphStore:
    """Neo4j when NEO4J_URI is set, else the in-memory networkx graph."""
    if settings.neo4j_uri:
        return Neo4jGraph(
            settings.neo4j_uri,
            user=settings.neo4j_user,
            password=settings.neo4j_password,
            database=settings.neo4j_database,
            write_batch=settings.neo4j_write_batch,
            query_timeout=settings.limits.graph_query_timeout_ms / 1000,
        )
    return MemoryGraph()


def broker_for(settings: Settings) -> Broker:
    """Redis Streams when REDIS_URL is set (any replica serves any subscriber), else in-process."""
    if settings.redis_url:
        limits = settings.limits
        return RedisBroker(
            settings.redis_url,
            max_length=limits.stream_max_length,
            timeout=limits.store_timeout_ms / 1000,
            retry=Backoff.from_limits(limits),
        )
    return MemoryBroker()


def search_index(settings: Settings, db: Database) -> SearchIndex:
    """Meilisearch when MEILI_URL is set, else full-text search in the records' database."""
    limits = settings.limits
    if settings.meili_url:
        return MeiliSearch(
            db,
            settings.meili_url,
            api_key=settings.meili_api_key,
            index=settings.meili_index,
            task_timeout_ms=limits.meili_task_timeout_ms,
            max_total_hits=limits.meili_max_total_hits,
        )
    return PostgresSearch(
        db,
        candidates=limits.search_candidates,
        facet_limit=limits.search_facet_limit,
        min_prefix=limits.search_min_prefix,
    )


def media_store(settings: Settings, secret: str) -> MediaStore:
    """S3 when S3_BUCKET is set, else files under the data dir behind signed app routes."""
    if settings.s3_bucket:
        return S3MediaStore(settings)
    return LocalMediaStore(Path(settings.data_dir) / "media", secret=secret)


async def purge_periodically(db: Database, store: MediaStore, settings: Settings) -> None:
    """The background job that removes PENDING media older than the limit, and their bytes."""
    limits = settings.limits
    age = timedelta(seconds=limits.media_pending_max_age_seconds)
    while True:
        try:
            purged = await purge_stale(db, store, older_than=age)
            if purged:
                log.info("purged %d stale pending media", purged)
        except Exception:  # the job must outlive a passing database or storage fault
            log.exception("purging stale media failed; trying again later")
        await asyncio.sleep(limits.media_purge_interval_seconds)


def projector_for(settings: Settings, db: Database, graph: GraphStore) -> Projector:
    name = (
        f"graph:{graph.name}:{settings.neo4j_database or 'default'}"
        if graph.persistent
        else "graph:memory"
    )
    return Projector(
        db,
        graph,
        name=name,
        batch_size=settings.limits.projector_batch,
        poll_seconds=settings.projector_poll_seconds,
        retry=Backoff.from_limits(settings.limits),
    )


async def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL, or a private cluster under the data dir when it is unset."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
    return await embedded.start(), embedded


@asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    count_statements: bool = False,
    applied: list[Migration] | None = None,
) -> AsyncIterator[Database]:
    """A migrated database (embedded unless DATABASE_URL is set), closed on exit."""
    dsn, embedded = await database_url(settings)
    try:
        db = await Database.connect(
            dsn,
            min_size=min_size or settings.db_pool_min,
            max_size=max_size or settings.db_pool_max,
            count_statements=count_statements,
        )
        try:
            async with db.pool.acquire() as conn:
                done = await migrate(conn)
            if applied is not None:
                applied.extend(done)
            yield db
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await embedded.stop()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def open_resources(
    settings: Settings,
    *,
    create_secret: bool = False,
    count_statements: bool = False,
    start_projector: bool = True,
) -> Resources:
    """Connect, migrate, project, and hand back everything a request needs."""
    secret = resolve_secret(settings, create=create_secret)
    stack = AsyncExitStack()  # Resources.close unwinds it: last opened, first closed
    try:
        limiter = Limiter.open(settings)
        stack.push_async_callback(limiter.close)
        db = await stack.enter_async_context(
            open_database(settings, count_statements=count_statements)
        )
        graph = graph_store(settings)
        stack.push_async_callback(graph.close)
        await graph.start()
        projector = projector_for(settings, db, graph)
        stack.push_async_callback(projector.stop)
        search = search_index(settings, db)
        stack.push_async_callback(search.close)
        await search.start()
        projector.sinks.append(search)
        await projector.prepare()
        await projector.catch_up()
        broker = broker_for(settings)
        await broker.start()
        stack.push_async_callback(broker.close)

        async def announce(dirty: dict[str, set[int]]) -> None:
            changed = {kind: sorted(ids) for kind, ids in dirty.items()}
            await broker.publish(GRAPH_TOPIC, {"changed": changed})

        projector.listeners.append(announce)
        media = media_store(settings, secret)
        await media.start()
        stack.push_async_callback(media.close)
        if start_projector:
            projector.start()
            purger = asyncio.create_task(purge_periodically(db, media, settings))
            stack.push_async_callback(_cancel, purger)
    except BaseException:
        await stack.aclose()
        raise
    return Resources(settings, db, secret, limiter, graph, projector, media, broker, search, stack)
