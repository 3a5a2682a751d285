"""The composition root: Settings in; the database, backends, projector, broker, limiter and
background jobs out. Opened in order and closed in reverse, by the app's lifespan and by the
CLI alike. Configuration picks each backend (a URL set switches a store from its embedded
default to the real service); nothing else in the package chooses or wires one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coachgraph.config import Settings
from coachgraph.graph.collab import CollabVectors
from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.model import GraphStore
from coachgraph.graph.neo4j import Neo4jGraph
from coachgraph.graph.projector import Applied, Listener, Projector, Sink
from coachgraph.leaderboards.model import Leaderboards
from coachgraph.leaderboards.postgres import PostgresLeaderboards
from coachgraph.leaderboards.redis import RedisLeaderboards
from coachgraph.lifecycle.erasure import Stores, resume_periodically
from coachgraph.limiter import Limiter
from coachgraph.media.local import LocalMediaStore
from coachgraph.media.model import MediaStore
from coachgraph.media.purge import purge_periodically
from coachgraph.media.s3 import S3MediaStore
from coachgraph.retry import Backoff
from coachgraph.search.meili import MeiliSearch
from coachgraph.search.model import SearchIndex
from coachgraph.search.postgres import PostgresSearch
from coachgraph.secret import resolve_secret
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.documents import DocumentStore
from coachgraph.stores.migrate import Migration, migrate
from coachgraph.stores.retention import run_periodically as retain_periodically
from coachgraph.subscriptions.broker import Broker, MemoryBroker, Message
from coachgraph.subscriptions.postgres import PostgresBroker
from coachgraph.subscriptions.redis import RedisBroker
from coachgraph.subscriptions.topics import EVERYTHING, GRAPH_TOPIC, graph_changed


@dataclass
class Resources:
    """What every request may use: settings, the database, the backends, the secret, the limiter."""

    settings: Settings
    db: Database
    jwt_secret: str
    limiter: Limiter  # every door's rate limits (api/ratelimit.py counts against it)
    graph: GraphStore
    projector: Projector
    media: MediaStore
    broker: Broker
    search: SearchIndex
    exits: AsyncExitStack  # closes what was opened, last opened first
    # automatic persisted queries (api/documents.py), shared through Redis with REDIS_URL
    documents: DocumentStore = field(default_factory=lambda: DocumentStore(1))
    leaderboards: Leaderboards | None = None  # None: computed in Postgres (see Context)
    lifecycle: Stores | None = None  # erasure, export and audit (resolvers/erasure.py)

    async def close(self) -> None:
        await self.exits.aclose()


# --- backends, chosen by configuration --------------------------------------------------------


def graph_store(settings: Settings) -> GraphStore:
    """Neo4j when NEO4J_URI is set, else the in-memory networkx graph."""
    if settings.neo4j_uri:
        limits = settings.limits
        return Neo4jGraph(
            settings.neo4j_uri,
            user=settings.neo4j_user,
            password=settings.neo4j_password,
            database=settings.neo4j_database,
            pool_size=limits.neo4j_pool_size,
            timeout=limits.neo4j_connect_timeout_ms / 1000,
            write_batch=settings.neo4j_write_batch,
            query_timeout=limits.graph_query_timeout_ms / 1000,
        )
    return MemoryGraph()


def broker_for(settings: Settings, db: Database | None = None) -> Broker:
    """Redis Streams when REDIS_URL is set (any replica serves any subscriber); PostgreSQL
    LISTEN/NOTIFY with more than one worker and no Redis; else in-process (one worker).
    COACHGRAPH_BROKER picks one explicitly."""
    name = settings.broker_name
    if name == "postgres":
        if db is None or not db.dsn:
            raise ValueError("the PostgreSQL broker needs the database")
        limits = settings.limits
        return PostgresBroker(
            db.dsn,
            pool=db.pool,
            timeout=limits.store_timeout_ms / 1000,
            retry=Backoff.from_limits(limits),
        )
    if name == "redis" and settings.redis_url:
        limits = settings.limits
        return RedisBroker(
            settings.redis_url,
            max_length=limits.stream_max_length,
            timeout=limits.store_timeout_ms / 1000,
            retry=Backoff.from_limits(limits),
            read_block_ms=limits.redis_read_block_ms,
            read_count=limits.redis_read_count,
            read_linger_ms=limits.redis_read_linger_ms,
        )
    return MemoryBroker()


def leaderboards_for(settings: Settings, db: Database) -> Leaderboards:
    """Redis sorted sets when REDIS_URL is set, else computed in Postgres at each request."""
    if settings.redis_url:
        timeout = settings.limits.store_timeout_ms / 1000
        return RedisLeaderboards(db, settings.redis_url, timeout=timeout)
    return PostgresLeaderboards(db)


def search_index(settings: Settings, db: Database) -> SearchIndex:
    """Meilisearch when MEILI_URL is set, else full-text search in the records' database."""
    limits = settings.limits
    if settings.meili_url:
        return MeiliSearch(
            db,
            settings.meili_url,
            api_key=settings.meili_api_key,
            index=settings.meili_index,
            batch=limits.search_rebuild_batch,
            task_timeout_ms=limits.meili_task_timeout_ms,
            request_timeout_seconds=limits.meili_request_timeout_seconds,
            max_total_hits=limits.meili_max_total_hits,
            max_facet_values=limits.meili_max_facet_values,
        )
    return PostgresSearch(
        db,
        candidates=limits.search_candidates,
        facet_limit=limits.search_facet_limit,
        min_prefix=limits.search_min_prefix,
        max_corrections=limits.search_max_corrections,
        facet_cache_size=limits.search_facet_cache_size,
        rebuild_batch=limits.search_rebuild_batch,
        timeout=limits.store_timeout_ms / 1000,
    )


def collab_vectors(settings: Settings, db: Database) -> CollabVectors:
    """The learned collaborative vectors, in PostgreSQL whichever graph backend runs."""
    limits = settings.limits
    return CollabVectors(
        db,
        dims=limits.collab_dims,
        chunk=limits.collab_rebuild_chunk,
        half_life_days=limits.collab_half_life_days,
        batch=limits.projector_batch,
    )


def media_store(settings: Settings, secret: str) -> MediaStore:
    """S3 when S3_BUCKET is set, else files under the data dir behind signed app routes."""
    if settings.s3_bucket:
        return S3MediaStore(settings)
    return LocalMediaStore(
        Path(settings.data_dir) / "media",
        secret=secret,
        write_chunk=settings.limits.media_io_chunk_bytes,
    )


def projector_for(
    settings: Settings,
    db: Database,
    graph: GraphStore,
    *,
    sinks: Iterable[Sink] = (),
    listeners: Iterable[Listener] = (),
) -> Projector:
    """The projector that keeps `graph` (and `sinks`) in step with the outbox."""
    name = (
        f"graph:{graph.name}:{settings.neo4j_database or 'default'}"
        if graph.persistent
        else "graph:memory"
    )
    return Projector(
        db,
        graph,
        name=name,
        sinks=sinks,
        listeners=listeners,
        batch_size=settings.limits.projector_batch,
        poll_seconds=settings.projector_poll_seconds,
        retry=Backoff.from_limits(settings.limits),
        connect_timeout=settings.limits.projector_connect_timeout_ms / 1000,
        rebuild_chunk=settings.limits.graph_rebuild_chunk,
    )


def announcer(broker: Broker, *, max_ids: int, local: bool = False) -> Listener:
    """A projector listener that publishes which records each batch changed, and the current
    coaches of the athletes among them, for live matches (resolvers/live.py decides from that
    whom a batch concerns). A rebuild, a removed record (its edges went with it, and what they
    linked is unknown now) or more than `max_ids` ids is announced as everything; a batch that
    changed no record of the graph (session events) is not announced at all.

    `local`: told to this process's subscribers only, for a graph of this process's own (the
    in-memory one: each worker projects the outbox into its own, and its subscribers must
    recompute after their own graph has the change, not after another worker's)."""

    async def publish(message: Message) -> None:
        if local:
            broker.fanout.deliver(GRAPH_TOPIC, message)
        else:
            await broker.publish(GRAPH_TOPIC, message)

    async def announce(applied: Applied) -> None:
        states = applied.states
        if states is None or any(states.missing.values()):
            await publish(EVERYTHING)
            return
        if not any(applied.dirty.values()):
            return
        coached_by = {coach for athlete in states.athletes for coach in athlete.coaches}
        await publish(graph_changed(applied.dirty, coached_by=coached_by, max_ids=max_ids))

    return announce


# --- the database -----------------------------------------------------------------------------


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


# --- everything, in order ---------------------------------------------------------------------


def start_job(stack: AsyncExitStack, job: Coroutine[Any, Any, None], *, name: str) -> None:
    """Run `job` in the background until the stack unwinds, which cancels it."""
    task = asyncio.create_task(job, name=name)
    stack.push_async_callback(_cancel, task)


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
    """Connect, migrate, project, and hand back everything a request needs.

    Opened in order (limiter, database, graph, search, broker, projector, media, jobs) and
    closed in reverse by `Resources.close`: the jobs and the projector stop before the stores
    they feed are closed."""
    secret = resolve_secret(settings, create=create_secret)
    stack = AsyncExitStack()
    try:
        limiter = Limiter.open(settings)
        stack.push_async_callback(limiter.close)
        db = await stack.enter_async_context(
            open_database(settings, count_statements=count_statements)
        )
        graph = graph_store(settings)
        stack.push_async_callback(graph.close)
        await graph.start()
        search = search_index(settings, db)
        stack.push_async_callback(search.close)
        await search.start()
        broker = broker_for(settings, db)
        await broker.start()
        stack.push_async_callback(broker.close)
        announce = announcer(
            broker, max_ids=settings.limits.graph_change_max_ids, local=not graph.persistent
        )
        # of several workers, one feeds the search and vector sinks (the others would write
        # them again)
        sinks: list[Sink] = (
            [search, collab_vectors(settings, db)] if settings.worker_index == 0 else []
        )
        projector = projector_for(settings, db, graph, sinks=sinks, listeners=[announce])
        stack.push_async_callback(projector.stop)
        await projector.prepare()
        await projector.catch_up()
        media = media_store(settings, secret)
        await media.start()
        stack.push_async_callback(media.close)
        documents = DocumentStore.open(settings, pool=db.pool)
        stack.push_async_callback(documents.close)
        leaderboards = leaderboards_for(settings, db)
        await leaderboards.start()
        stack.push_async_callback(leaderboards.close)
        lifecycle = Stores(db, media, broker, search, projector, key=secret)
        await lifecycle.erased.refresh(db)
        if start_projector:
            projector.start()
            if settings.worker_index == 0:  # of several workers, one runs the jobs
                finish = resume_periodically(
                    lifecycle, interval_seconds=settings.limits.erasure_resume_interval_seconds
                )
                start_job(stack, finish, name="finish-erasures")
                purge = purge_periodically(db, media, settings.limits)
                start_job(stack, purge, name="purge-stale-media")
                retain = retain_periodically(db, settings.limits)
                start_job(stack, retain, name="metric-retention")
    except BaseException:
        await stack.aclose()
        raise
    resources = Resources(
        settings, db, secret, limiter, graph, projector, media, broker, search, stack
    )
    resources.documents = documents
    resources.leaderboards = leaderboards
    resources.lifecycle = lifecycle
    return resources
