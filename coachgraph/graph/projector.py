"""The projector: outbox events, in order, applied idempotently to a graph backend.

State-based: an event only says which records changed; their current state is read from
Postgres and written to the graph, so replaying an event (after a crash between applying
and recording the position) is harmless and the graph converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from coachgraph.errors import Unavailable
from coachgraph.graph.model import GraphStore
from coachgraph.retry import Backoff
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database
from coachgraph.stores.graph_source import START, Event, Position, States
from coachgraph.stores.outbox import Dirty

log = logging.getLogger(__name__)
CHANNEL = "coachgraph_outbox"


@dataclass(frozen=True, slots=True)
class Applied:
    """What a listener is told after a batch: the records its events named (`dirty`) and
    their states as written; `states is None` after a rebuild, when anything may have
    changed."""

    dirty: Dirty
    states: States | None


Listener = Callable[[Applied], Awaitable[None]]


class Sink(Protocol):
    """Another projection fed by the same batches (search): applied before the position moves.

    A persistent sink keeps its own offset, so a start that rebuilds the in-memory graph does
    not rebuild it too: it catches up from where it was."""

    @property
    def offset_name(self) -> str: ...

    @property
    def persistent(self) -> bool: ...

    async def apply(self, dirty: Dirty) -> None: ...

    async def rebuild(self) -> int: ...


def affected(events: list[Event]) -> tuple[Dirty, bool]:
    """Which records the events touch, and whether a full rebuild is needed."""
    dirty: Dirty = defaultdict(set)
    rebuild = False
    for e in events:
        if e.aggregate == "bulk":
            rebuild = True
        elif e.aggregate in ("coach", "athlete", "skill", "program"):
            dirty[e.aggregate].add(e.aggregate_id)
            coach = e.payload.get("coach_id")
            if coach is not None:  # assignments change the coach's load; programs its LEADS
                dirty["coach"].add(int(coach))
        elif e.event == "session.completed" and e.payload.get("athlete_id") is not None:
            # a completed session weighs the athlete's choice of coach (graph/collab.py)
            dirty["athlete"].add(int(e.payload["athlete_id"]))
    return dirty, rebuild


@dataclass
class Lag:
    pending: int
    oldest_seconds: float | None
    position: Position


class Projector:
    """Keeps one graph backend, and its sinks, in step with the outbox; tells its listeners
    (live match updates) what each batch changed."""

    def __init__(
        self,
        db: Database,
        graph: GraphStore,
        *,
        name: str,
        sinks: Iterable[Sink] = (),
        listeners: Iterable[Listener] = (),
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        retry: Backoff | None = None,
        connect_timeout: float = 10.0,
        rebuild_chunk: int = 20_000,
    ) -> None:
        self.db = db
        self.graph = graph
        self.name = name
        self.persistent = graph.persistent  # only a persistent graph keeps its position
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.position = START
        # fixed at construction: the composition root decides what a batch feeds
        self.sinks: tuple[Sink, ...] = tuple(sinks)  # other projections, applied in step
        self.listeners: tuple[Listener, ...] = tuple(listeners)  # told after each batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time, whoever asks (task, tests, reindex)
        self._task: asyncio.Task[None] | None = None
        self._listen_conn: asyncpg.Connection | None = None
        # a failed batch (a store down) and a lost LISTEN connection are retried after
        # capped exponential delays, each on its own schedule
        self.retry = retry or Backoff(0.1, 5.0)
        self._listen_retry = Backoff(self.retry.initial, self.retry.maximum)
        # events committed while an older transaction is still open are not settled yet, and
        # that transaction's end may announce nothing (it wrote no event: an audit write, a
        # retention job): looked for again soon, not at the next poll
        self._settle_retry = Backoff(0.02, 1.0)
        self.connect_timeout = connect_timeout  # its LISTEN connection: to open and to close
        self.rebuild_chunk = rebuild_chunk  # records read per statement when the graph is rebuilt
        self.failures = 0  # batches failed in a row (tests and health read it)

    async def prepare(self) -> None:
        """Resume each projection from its stored position, rebuilding those without one (or
        in memory); then read on from the earliest. Applying an event to a projection that
        already has it changes nothing, so the others simply converge."""
        async with self._lock:
            stored = None
            if self.persistent and await self.graph.marked(self.name):
                stored = await graph_source.load_offset(self.db.pool, name=self.name)
            positions = [stored] if stored is not None else [await self._rebuild_graph()]
            for sink in self.sinks:
                offset = None
                if sink.persistent:
                    offset = await graph_source.load_offset(self.db.pool, name=sink.offset_name)
                if offset is None:
                    offset = await graph_source.horizon(self.db.pool)
                    await sink.rebuild()
                positions.append(offset)
            await self._advance(min(positions))

    async def rebuild(self) -> None:
        """Replace the projection with one built from every record."""
        async with self._lock:
            await self._rebuild()

    async def _rebuild(self) -> None:
        position = await self._rebuild_graph()
        for sink in self.sinks:
            await sink.rebuild()
        await self._advance(position)
        await self._tell(Applied({}, None))

    async def _rebuild_graph(self) -> Position:
        """The graph from every record; returns the position it reflects."""
        async with self.db.pool.acquire() as conn:
            position = await graph_source.horizon(conn)
            await self.graph.clear()
            for kind in ("skill", "program", "coach", "athlete"):
                chunks = graph_source.stream_all(conn, kind, chunk=self.rebuild_chunk)
                async for chunk in chunks:
                    await self.graph.apply(_states(kind, chunk))
        freeze = getattr(self.graph, "freeze", None)
        if freeze is not None:
            freeze()
        await self.graph.mark(self.name)
        return position

    async def _verify(self) -> None:
        """After an outage of a persistent graph: if the server came back without our build
        (a restart that lost its data), rebuild it; the events from our position on are then
        applied again, which changes nothing they already did."""
        async with self._lock:
            if await self.graph.marked(self.name):
                return
            log.warning("projector %s: the graph lost its data; rebuilding it", self.name)
            await self._rebuild_graph()

    async def run_once(self) -> int:
        """Apply the next batch of settled events; return how many there were."""
        async with self._lock:
            return await self._run_once()

    async def _run_once(self) -> int:
        async with self.db.pool.acquire() as conn:
            events = await graph_source.events_after(
                conn, position=self.position, limit=self.batch_size
            )
            if not events:
                return 0
            dirty, rebuild = affected(events)
            states = None if rebuild else await graph_source.load(conn, ids=dirty)
        if states is None:  # with the connection back in the pool: rebuilding takes one too
            await self._rebuild()
            return len(events)
        await self.graph.apply(states)
        for sink in self.sinks:
            await sink.apply(dirty)
        await self._advance(events[-1].position)
        await self._tell(Applied(dirty, states))
        return len(events)

    async def _tell(self, applied: Applied) -> None:
        for listener in self.listeners:
            await listener(applied)

    async def _advance(self, position: Position) -> None:
        names = [self.name] if self.persistent else []
        names += [sink.offset_name for sink in self.sinks if sink.persistent]
        await graph_source.save_offsets(self.db.pool, names=names, position=position)
        self.position = position

    async def catch_up(self) -> None:
        """Apply everything settled so far."""
        while await self.run_once():
            pass

    async def lag(self) -> Lag:
        pending, age = await graph_source.lag(self.db.pool, position=self.position)
        return Lag(pending, age, self.position)

    # ------------------------------------------------------------------ background task
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"projector:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listen_conn is not None:
            conn, self._listen_conn = self._listen_conn, None
            if conn.is_closed():
                return
            try:
                await asyncio.wait_for(conn.close(), self.connect_timeout)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _run(self) -> None:
        """Apply batches as NOTIFY (or the poll) announces them, for as long as the app runs.

        A batch that fails (graph, search or Postgres down) is retried from the same position
        after a capped exponential delay; applying is idempotent, so the projection converges
        once the store is back. The LISTEN connection is re-opened whenever it is lost (a
        PostgreSQL restart); until then the poll keeps the projection moving."""
        while True:
            if self.db.dsn and (self._listen_conn is None or self._listen_conn.is_closed()):
                await self._listen()
            self._wake.clear()  # before reading: a NOTIFY from now on wakes the next wait
            try:
                if self.failures and self.persistent:
                    await self._verify()
                if await self.run_once():
                    self._recovered()
                    self._settle_retry.reset()
                    continue
                self._recovered()
                wait = self.poll_seconds
                if (await self.lag()).pending:  # committed, but not settled yet
                    wait = min(wait, self._settle_retry.next())
                else:
                    self._settle_retry.reset()
            except asyncio.CancelledError:
                raise
            except Unavailable as err:
                wait = self.retry.next()
                self.failures += 1
                log.warning(
                    "projector %s: %s; retrying in %.1f s (attempt %d)",
                    self.name,
                    err.message,
                    wait,
                    self.failures,
                )
            except Exception:  # keep projecting: log, back off, retry the same batch
                wait = self.retry.next()
                self.failures += 1
                log.exception("projector %s: batch failed; retrying in %.1f s", self.name, wait)
            if self.db.dsn and self._listen_conn is None:
                wait = min(wait, self._listen_retry.next())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _recovered(self) -> None:
        if self.failures:
            log.info("projector %s: caught up again after %d failures", self.name, self.failures)
        self.failures = 0
        self.retry.reset()

    async def _listen(self) -> None:
        """(Re)open the connection that LISTENs for outbox notifications; on failure leave it
        to the next turn of the loop (the poll covers the meanwhile)."""
        lost = self._listen_conn is not None
        if self._listen_conn is not None:
            self._listen_conn.terminate()
            self._listen_conn = None
        try:
            conn = await asyncio.wait_for(asyncpg.connect(self.db.dsn), self.connect_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            if not self._listen_retry.failing:
                log.warning("projector %s: no LISTEN connection (%s); polling", self.name, err)
            return
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            conn.terminate()
            log.warning("projector %s: LISTEN failed (%s); polling", self.name, err)
            return
        except BaseException:  # stop() cancelled us meanwhile: the connection is nobody's
            conn.terminate()
            raise
        conn.add_termination_listener(self._connection_lost)
        self._listen_conn = conn
        if lost or self._listen_retry.failing:
            log.info("projector %s: listening again", self.name)
        self._listen_retry.reset()
        self._wake.set()  # what was committed while nobody listened is read at once

    def _notified(self, *_: object) -> None:
        self._wake.set()

    def _connection_lost(self, *_: object) -> None:
        self._wake.set()  # the loop sees the closed connection and re-listens


def _states(kind: str, chunk: list[object]) -> States:
    buckets: dict[str, list[object]] = {"coach": [], "athlete": [], "skill": [], "program": []}
    buckets[kind] = chunk
    return States(
        buckets["coach"],  # type: ignore[arg-type]
        buckets["athlete"],  # type: ignore[arg-type]
        buckets["skill"],  # type: ignore[arg-type]
        buckets["program"],  # type: ignore[arg-type]
        {},
    )
