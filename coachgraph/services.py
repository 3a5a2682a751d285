"""Operations the CLI runs outside a request: seed, reindex, serve (wiring from runtime.py)."""

from __future__ import annotations

import signal
import sys
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from starlette.types import ASGIApp
from tqdm import tqdm

from coachgraph import seed
from coachgraph.config import Settings
from coachgraph.runtime import (
    collab_vectors,
    graph_store,
    leaderboards_for,
    open_database,
    projector_for,
    search_index,
)
from coachgraph.stores import bulk
from coachgraph.stores.db import Database


async def seed_database(
    db: Database, *, coaches: int, athletes: int, seed_value: int, show_progress: bool = True
) -> dict[str, int]:
    """Generate and COPY a deterministic dataset; return the rows written per table, or {}
    when the database already holds this seed with these sizes (so a second run is a no-op;
    a different seed or size appends another dataset)."""
    run = {"seed": seed_value, "coaches": coaches, "athletes": athletes}
    bar = tqdm(
        total=coaches + athletes + len(bulk.TABLES),
        desc="seeding",
        unit="row",
        file=sys.stderr,
        disable=not show_progress,
    )

    def advance(n: int) -> None:
        bar.update(n)

    with bar:
        async with db.pool.acquire() as conn:
            if await bulk.seeded(conn, run):
                return {}
            bases = await bulk.bases(conn)
            data = seed.generate(
                coaches=coaches, athletes=athletes, seed=seed_value, bases=bases, progress=advance
            )
            bar.set_description("writing")
            loaded = await bulk.load(conn, data, run=run, progress=lambda t, rows: advance(1))
    return data.sizes() if loaded else {}


async def reindex_search(settings: Settings) -> str:
    """Rebuild the search projection from Postgres while it keeps answering, then replay what
    changed meanwhile (a running API may have written documents the rebuild read earlier)."""
    from coachgraph.graph.projector import affected
    from coachgraph.stores import graph_source

    async with open_database(settings, min_size=1, max_size=2) as db:
        search = search_index(settings, db)
        await search.start()
        try:
            started = time.perf_counter()
            position = await graph_source.horizon(db.pool)
            count = await search.rebuild()
            elapsed = time.perf_counter() - started
            while events := await graph_source.events_after(
                db.pool, position=position, limit=settings.limits.projector_batch
            ):
                await search.apply(affected(events)[0])
                position = events[-1].position
        finally:
            await search.close()
    return (
        f"coachgraph: search rebuilt in {search.name}: {count} documents in {elapsed:.1f} s "
        f"({count / max(elapsed, 1e-9):,.0f}/s)"
    )


async def reindex_leaderboards(settings: Settings) -> str:
    """Rebuild the Redis leaderboards from Postgres (nothing is kept without REDIS_URL)."""
    if not settings.redis_url:
        return (
            "coachgraph: leaderboards are computed in Postgres at each request (REDIS_URL "
            "unset); nothing to do"
        )
    async with open_database(settings, min_size=1, max_size=2) as db:
        boards = leaderboards_for(settings, db)
        await boards.start()
        try:
            places = await boards.rebuild(now=datetime.now(UTC))
        finally:
            await boards.close()
    return f"coachgraph: leaderboards rebuilt in {boards.name}: {places} places"


async def reindex_vectors(settings: Settings) -> str:
    """Rebuild the learned collaborative vectors from Postgres (graph/collab.py), resuming one
    that was cut off, while a running API keeps applying its events to them; then fit the
    blend's weights on held-out recent assignments and store them (graph/blend.py)."""
    from coachgraph.graph import blend
    from coachgraph.stores import graph_source

    limits = settings.limits
    async with open_database(settings, min_size=1, max_size=2) as db:
        vectors = collab_vectors(settings, db)
        started = time.perf_counter()
        count = await vectors.rebuild()
        elapsed = time.perf_counter() - started
        # a running API's projector goes on from where the rebuild began (replaying is
        # harmless), whatever it had applied meanwhile
        await graph_source.save_offsets(
            db.pool, names=[vectors.offset_name], position=vectors.rebuilt_from
        )
        rows, size = await vectors.size()
        started = time.perf_counter()
        fitted = await blend.fit_for(db, limits)
        fitting = time.perf_counter() - started
    return (
        f"coachgraph: collaborative vectors rebuilt: {count} athletes in {elapsed:.1f} s; "
        f"{rows} vectors, {size / 2**20:.1f} MiB\n"
        f"coachgraph: blend weights fitted in {fitting:.1f} s: {fitted.reason}"
    )


async def reindex_graph(settings: Settings) -> str:
    """Rebuild the graph projection from Postgres; say what was done."""
    graph = graph_store(settings)
    if not graph.persistent:
        return (
            "coachgraph: the embedded networkx graph lives in the API process and is rebuilt "
            "from Postgres at every start; nothing to do"
        )
    async with open_database(settings, min_size=1, max_size=2) as db:
        await graph.start()
        try:
            projector = projector_for(settings, db, graph)
            await projector.rebuild()
            await projector.catch_up()
            lag = await projector.lag()
        finally:
            await graph.close()
    return f"coachgraph: graph rebuilt into {graph.name}; {lag.pending} events pending"


async def demo_identities(db: Database) -> tuple[int, int]:
    """A coach with athletes and one of its athletes, to hand out demo tokens for."""
    row = await db.pool.fetchrow(
        "SELECT coach_id, athlete_id FROM coach_athletes ORDER BY coach_id, athlete_id LIMIT 1"
    )
    if row is None:
        coach_id = await db.pool.fetchval("SELECT min(id) FROM coaches")
        athlete_id = await db.pool.fetchval("SELECT min(id) FROM athletes")
        return coach_id, athlete_id
    return row["coach_id"], row["athlete_id"]


def run_server(app: ASGIApp, **options: Any) -> int:
    """`uvicorn.run(app, **options)`, and SIGHUP shuts down as gracefully as SIGINT/SIGTERM:
    connections drain, the lifespan closes every store (stopping the embedded PostgreSQL), and
    the process exits 0. Left to its default, SIGHUP (a closed terminal) killed the process
    at once and orphaned the embedded server. Returns the exit status."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal once it has shut down (a KeyboardInterrupt traceback
            # for Ctrl-C, death by SIGTERM); a graceful stop here is a clean exit
            self._captured_signals.clear()

    sockets = options.pop("sockets", None)  # already bound (a worker of `serve --workers`)
    server = Server(uvicorn.Config(app, **options))

    def hang_up(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = signal.signal(signal.SIGHUP, hang_up)
    try:
        server.run(sockets=sockets)
    finally:
        signal.signal(signal.SIGHUP, previous)
    return 0 if server.started else 3  # 3: uvicorn's status when the app failed to start
