"""The projector's own connections: a rebuild on a pool of one, and a LISTEN connection whose
setup is cancelled by stop()."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from coachgraph.graph.memory import MemoryGraph
from coachgraph.graph.projector import Projector
from coachgraph.stores import outbox
from coachgraph.stores.db import Database
from tests.factories import Factory

DEADLINE = 60.0


async def test_a_rebuild_in_a_batch_needs_one_connection_at_a_time(
    db: Database, factory: Factory, pg_dsn: str
) -> None:
    """A batch with a bulk event rebuilds the graph; the batch's connection is back in the pool
    by then, so a pool of one does not wait for itself."""
    small = await Database.connect(pg_dsn, min_size=1, max_size=1)
    try:
        graph = MemoryGraph()
        p = Projector(small, graph, name="test:pool-of-one")
        await p.prepare()  # an in-memory graph is rebuilt; reading starts at the horizon
        coach = await factory.coach()
        async with db.transaction() as conn:
            await outbox.append(
                conn, aggregate="bulk", aggregate_id=0, event="bulk.loaded", payload={}
            )
        await asyncio.wait_for(p.catch_up(), DEADLINE)  # without the fix: waits for ever
        assert coach.id in graph.coaches
        assert (await p.lag()).pending == 0
    finally:
        await small.close()


class StallingRelay:
    """A TCP relay to the real PostgreSQL that holds back a client's messages from the first one
    containing `stall_on` on, so a statement waits as long as the test likes; counts its open
    client connections."""

    def __init__(self, dsn: str, stall_on: bytes) -> None:
        url = urlsplit(dsn)
        self.host = parse_qs(url.query).get("host", [url.hostname or "localhost"])[0]
        self.port = url.port or 5432
        self.database = url.path.lstrip("/")
        self.stall_on = stall_on
        self.stalled = asyncio.Event()
        self.open = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://postgres@127.0.0.1:{port}/{self.database}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.port}")
        return await asyncio.open_connection(self.host, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        up_reader, up_writer = await self._upstream()
        back = asyncio.create_task(self._pipe(up_reader, writer))
        self._tasks.add(back)
        stalled = False
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    if stalled or self.stall_on in data:
                        stalled = True
                        self.stalled.set()
                        continue
                    up_writer.write(data)
                    await up_writer.drain()
        finally:
            self.open -= 1
            up_writer.close()
            writer.close()
            back.cancel()
            self._tasks.discard(back)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def relay(pg_dsn: str) -> AsyncIterator[StallingRelay]:
    made = StallingRelay(pg_dsn, stall_on=b"LISTEN")
    try:
        yield made
    finally:
        await made.close()


async def test_stop_during_listen_setup_closes_the_new_connection(
    db: Database, relay: StallingRelay
) -> None:
    """stop() lands while LISTEN is on its way (connected, not yet listening): the connection
    that was just opened is closed, not left to the garbage collector."""
    dsn = await relay.start()
    p = Projector(Database(db.pool, dsn=dsn), MemoryGraph(), name="test:listen-cancelled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.start()
        await asyncio.wait_for(relay.stalled.wait(), DEADLINE)  # connected; LISTEN held back
        await p.stop()
        end = time.monotonic() + DEADLINE
        while relay.open:  # the relay sees the client hang up
            assert time.monotonic() < end, "the LISTEN connection was left open"
            await asyncio.sleep(0.05)
        gc.collect()
    unclosed = [w for w in caught if "unclosed connection" in str(w.message)]
    assert not unclosed, unclosed[0].message


async def test_an_event_settled_by_a_silent_commit_is_applied_without_waiting_for_the_poll(
    db: Database, factory: Factory, pg_dsn: str
) -> None:
    """An event committed while an older transaction is open is not settled until that one
    ends, and its end may announce nothing (it wrote no event). The projector, woken by the
    event's NOTIFY to find nothing settled, looks again soon: it does not sleep until the
    next poll (an hour here)."""
    import asyncpg

    graph = MemoryGraph()
    p = Projector(db, graph, name="test:settle", poll_seconds=3600.0)
    await p.prepare()
    older = await asyncpg.connect(pg_dsn)
    p.start()
    try:
        transaction = older.transaction()
        await transaction.start()
        await older.fetchval("SELECT pg_current_xact_id()")  # an open, older transaction id
        coach = await factory.coach()  # commits, NOTIFYs; not settled while `older` is open
        await asyncio.sleep(0.3)
        assert coach.id not in graph.coaches
        await transaction.commit()  # writes no event: no NOTIFY
        deadline = time.monotonic() + 10
        while coach.id not in graph.coaches:
            assert time.monotonic() < deadline, "the settled event was not applied"
            await asyncio.sleep(0.02)
    finally:
        await p.stop()
        await older.close()
