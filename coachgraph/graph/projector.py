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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from coachgraph.graph.model import GraphStore
from coachgraph.stores import graph_source
from coachgraph.stores.db import Database
from coachgraph.stores.graph_source import START, Event, Position, States

log = logging.getLogger(__name__)
CHANNEL = "coachgraph_outbox"

Dirty = dict[str, set[int]]
Listener = Callable[[Dirty], Awaitable[None]]


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
    return dirty, rebuild


@dataclass
class Lag:
    pending: int
    oldest_seconds: float | None
    position: Position


class Projector:
    """Keeps one graph backend in step with the outbox."""

    def __init__(
        self,
        db: Database,
        graph: GraphStore,
        *,
        name: str,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.graph = graph
        self.name = name
        self.persistent = graph.persistent  # only a persistent graph keeps its position
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.position = START
        self.listeners: list[Listener] = []  # told after each batch (live match updates)
        self.sinks: list[Sink] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one batch at a time, whoever asks (task, tests, reindex)
        self._task: asyncio.Task[None] | None = None
        self._listen_conn: asyncpg.Connection | None = None

    async def prepare(self) -> None:
        """Resume each projection from its stored position, rebuilding those without one (or
        in memory); then read on from the earliest. Applying an event to a projection that
        already has it changes nothing, so the others simply converge."""
        async with self._lock:
            stored = None
            if self.persistent:
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

    async def _rebuild_graph(self) -> Position:
        """The graph from every record; returns the position it reflects."""
        async with self.db.pool.acquire() as conn:
            position = await graph_source.horizon(conn)
            await self.graph.clear()
            for kind in ("skill", "program", "coach", "athlete"):
                async for chunk in graph_source.stream_all(conn, kind):
                    await self.graph.apply(_states(kind, chunk))
        freeze = getattr(self.graph, "freeze", None)
        if freeze is not None:
            freeze()
        return position

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
            if rebuild:
                await self._rebuild()
                return len(events)
            states = await graph_source.load(conn, ids=dirty)
        await self.graph.apply(states)
        for sink in self.sinks:
            await sink.apply(dirty)
        await self._advance(events[-1].position)
        for listener in self.listeners:
            await listener(dirty)
        return len(events)

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
            await self._listen_conn.close()
            self._listen_conn = None

    async def _run(self) -> None:
        try:
            self._listen_conn = await asyncpg.connect(self.db.dsn)
            await self._listen_conn.add_listener(CHANNEL, lambda *_: self._wake.set())
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("projector %s: no LISTEN connection (%s); polling only", self.name, err)
        while True:
            try:
                if await self.run_once():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:  # keep projecting: log, back off, retry the same batch
                log.exception("projector %s: batch failed; retrying", self.name)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)


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
