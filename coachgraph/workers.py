"""`coachgraph serve --workers N`: N worker processes serving one listening socket.

The parent (this supervisor) does what must happen once: it resolves the JWT secret (which also
signs media URLs: a generated one is generated here, not per worker), starts the embedded
PostgreSQL when DATABASE_URL is unset and migrates the database, binds the socket, and hands
each worker the database URL, the secret and the socket. The kernel spreads connections over
the workers, which accept from the same socket.

A worker that dies is replaced (the same index; a worker that keeps failing at start stops the
whole server). SIGINT, SIGTERM and SIGHUP stop the server gracefully: each worker drains its
connections and closes its stores, then the embedded PostgreSQL is stopped, once.

What the workers share is in Postgres (records, samples, the outbox) or Redis when set: the
broker is PostgreSQL LISTEN/NOTIFY unless REDIS_URL is set. Each worker projects the outbox into
its own in-memory graph (unless NEO4J_URI is set); worker 0 also feeds the search sink.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from coachgraph.config import Settings, SettingsError
from coachgraph.secret import resolve_secret
from coachgraph.stores.db import Database, EmbeddedPostgres
from coachgraph.stores.migrate import migrate

if TYPE_CHECKING:
    from coachgraph.runtime import Resources

log = logging.getLogger("coachgraph.workers")

FAILED_START = 3  # uvicorn's status when the app failed to start
QUICK_EXIT_SECONDS = 5.0  # a worker gone this soon after its start failed to start
MAX_QUICK_EXITS = 3  # in a row, for one index: the server stops
DRAIN_SECONDS = 30.0  # a worker that has not drained by then is killed


@dataclass
class Worker:
    index: int
    process: BaseProcess
    started: float
    quick_exits: int = 0


def serve_workers(
    settings: Settings,
    *,
    host: str,
    port: int,
    options: dict[str, Any],
    create_secret: bool = False,
    on_ready: Callable[[Resources], Awaitable[None]] | None = None,
    setup: Callable[[str], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Run `settings.workers` workers until a signal; returns the exit status. `on_ready`
    runs in worker 0 (demo data), `setup(log_format)` in each worker first (logging)."""
    secret = resolve_secret(settings, create=create_secret)
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url
    try:
        if dsn is None:
            embedded = EmbeddedPostgres(Path(settings.data_dir) / "postgres")
            dsn = asyncio.run(embedded.start())
        max_connections = asyncio.run(_migrate(dsn))
        pool_max = pool_size_for(settings, max_connections)
        if pool_max < settings.db_pool_max:
            log.warning(
                "%d workers x %d connections would pass PostgreSQL's max_connections (%d): "
                "each worker's pool holds at most %d",
                settings.workers,
                settings.db_pool_max + OTHER_CONNECTIONS,
                max_connections,
                pool_max,
            )
        shared = settings.with_(
            database_url=dsn,
            jwt_secret=secret,
            db_pool_max=pool_max,
            db_pool_min=min(settings.db_pool_min, pool_max),
        )
        sock = _bind(host, port)
        try:
            if announce is not None:
                bound = sock.getsockname()[1]
                announce(
                    f"coachgraph: {settings.workers} workers serving http://{host}:{bound}/graphql"
                )
            supervisor = Supervisor(shared, sock, options, on_ready=on_ready, setup=setup)
            return supervisor.run()
        finally:
            sock.close()
    finally:
        if embedded is not None:
            asyncio.run(embedded.stop())


async def _migrate(dsn: str) -> int:
    """Once, before any worker starts (they would race to apply the same migrations); returns
    the server's max_connections."""
    db = await Database.connect(dsn, min_size=1, max_size=1)
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
            return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await db.close()


# besides its pool, a worker holds the broker's and the projector's LISTEN connections and
# the rate limiter's pool (4)
OTHER_CONNECTIONS = 6
RESERVED_CONNECTIONS = 10  # for the CLI, psql, superuser slots


def pool_size_for(settings: Settings, max_connections: int) -> int:
    """Each worker's pool size: COACHGRAPH_DB_POOL_MAX, or less when the workers' connections
    would pass the server's max_connections; refused when even 2 each would."""
    room = (max_connections - RESERVED_CONNECTIONS) // settings.workers - OTHER_CONNECTIONS
    if room < 2:
        raise SettingsError(
            f"{settings.workers} workers need more connections than PostgreSQL's "
            f"max_connections ({max_connections}) allows; run fewer workers or raise it"
        )
    return min(settings.db_pool_max, room)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Starts the workers, replaces the dead, and stops them all on a signal."""

    def __init__(
        self,
        settings: Settings,
        sock: socket.socket,
        options: dict[str, Any],
        *,
        on_ready: Callable[[Resources], Awaitable[None]] | None = None,
        setup: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.options = options
        self.on_ready = on_ready
        self.setup = setup
        self.workers: dict[int, Worker] = {}
        self.stopping = False
        self.replaced = 0  # workers replaced after they died
        self._context = multiprocessing.get_context("spawn")

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._stop)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        status = 0
        try:
            for index in range(self.settings.workers):
                self.workers[index] = self._spawn(index)
            while not self.stopping:
                sentinels = [w.process.sentinel for w in self.workers.values()]
                multiprocessing.connection.wait(sentinels, timeout=0.5)
                for worker in list(self.workers.values()):
                    if self.stopping or worker.process.is_alive():
                        continue
                    if not self._replace(worker):
                        status = FAILED_START
                        self.stopping = True
        finally:
            self._drain()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping %d workers (%s)", len(self.workers), signal.Signals(signum).name)
        self.stopping = True

    def _spawn(self, index: int) -> Worker:
        settings = self.settings.with_(worker_index=index)
        process = self._context.Process(
            target=run_worker,
            args=(settings, self.sock, self.options, self.on_ready if index == 0 else None),
            kwargs={"setup": self.setup},
            name=f"coachgraph-worker-{index}",
        )
        process.start()
        return Worker(index, process, time.monotonic())

    def _replace(self, worker: Worker) -> bool:
        """A replacement for a dead worker; False when it keeps failing at start."""
        code = worker.process.exitcode
        quick = time.monotonic() - worker.started < QUICK_EXIT_SECONDS
        quick_exits = worker.quick_exits + 1 if quick else 0
        if quick_exits >= MAX_QUICK_EXITS:
            log.error("worker %d failed to start %d times; stopping", worker.index, quick_exits)
            return False
        log.warning(
            "worker %d (pid %s) exited with %s; starting another",
            worker.index,
            worker.process.pid,
            code,
        )
        worker.process.close()
        replacement = self._spawn(worker.index)
        replacement.quick_exits = quick_exits
        self.workers[worker.index] = replacement
        self.replaced += 1
        return True

    def _drain(self) -> None:
        """SIGTERM to each worker (uvicorn drains its connections and the lifespan closes
        its stores), then wait; one that does not finish in DRAIN_SECONDS is killed."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + DRAIN_SECONDS
        for worker in self.workers.values():
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker %d did not drain in time; killing it", worker.index)
                worker.process.kill()
                worker.process.join()


def run_worker(
    settings: Settings,
    sock: socket.socket,
    options: dict[str, Any],
    on_ready: Callable[[Resources], Awaitable[None]] | None,
    *,
    setup: Callable[[str], None] | None = None,
) -> None:
    """One worker process: the app on the inherited socket until SIGTERM.

    In a process group of its own, so that a terminal's Ctrl-C or hang-up reaches the
    supervisor alone, which then stops each worker once (a second signal would make uvicorn
    skip draining); and it stops itself should the supervisor die without telling it."""
    import os
    import sys
    import threading

    from coachgraph.app import create_app
    from coachgraph.services import run_server

    os.setpgrp()
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_parent, name="watch-supervisor", daemon=True).start()
    if setup is not None:
        setup(settings.log_format)
    app = create_app(settings, on_ready=on_ready)
    sys.exit(run_server(app, sockets=[sock], **options))
