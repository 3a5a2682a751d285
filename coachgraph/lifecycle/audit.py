"""Audit events of one request, gathered as fields resolve and written through one writer per
database, which puts the events of concurrent requests in the same INSERT."""

from __future__ import annotations

import asyncio
import logging
import weakref

from coachgraph.lifecycle.erasure import subject_of
from coachgraph.stores import audit
from coachgraph.stores.db import Database

log = logging.getLogger(__name__)

Event = tuple[str, str, str]  # actor, action, subject


class AuditWriter:
    """Appends events in one INSERT at a time: what is handed over while one is in flight goes
    in the next, so concurrent requests share statements and commits. Each hand-over gets a
    future, done when its events are committed (or failed with the INSERT's error). The commit
    is asynchronous: durable within a fraction of a second, lost only if the database server
    itself crashes in that window (measured: the durable commit's WAL flush was most of the
    audit's cost on a coach's dashboard, BENCHMARKS.md)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[tuple[list[Event], asyncio.Future[None]]] = []
        self._drain: asyncio.Task[None] | None = None

    def submit(self, events: list[Event]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((events, future))
        if self._drain is None or self._drain.done() or self._drain.get_loop() is not loop:
            # it starts once the current turn of the loop is over: the fields resolving in
            # this turn have recorded their events by then
            self._drain = loop.create_task(self._write())
        return future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            rows = [event for events, _ in batch for event in events]
            try:
                # one statement, its own transaction, committed without waiting for the WAL
                # flush (stores/audit.py): a read's answer waits for the row, not for the disk
                await audit.append(self.db.pool, events=rows, durable=False)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as error:
                log.exception("writing %d audit events failed", len(rows))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


_writers: weakref.WeakKeyDictionary[Database, AuditWriter] = weakref.WeakKeyDictionary()


def writer_for(db: Database) -> AuditWriter:
    """The process's writer for `db`."""
    found = _writers.get(db)
    if found is None:
        found = _writers[db] = AuditWriter(db)
    return found


class AuditBatch:
    """(actor, action, subject) of one request, each once however often a field asks.

    An event recorded with the request's database is handed to the writer at once, so its
    INSERT runs while the request goes on reading; over HTTP the view's `flush` at the request's
    end hands over what is left and waits for all of it: no answer goes out before its events
    are committed, and a failed write fails the request. A WebSocket connection has no such
    end: with `eager_db` each new event is written at once (in the background), and each only
    once for the connection."""

    def __init__(self, key: str, *, eager_db: Database | None = None) -> None:
        self.key = key
        self.events: dict[Event, None] = {}  # ordered, without repeats; not yet handed over
        self._eager_db = eager_db
        self._asked: set[tuple[str, str, int]] = set()  # every event recorded, unhashed
        self._handed: list[asyncio.Future[None]] = []  # the writer's answers, not yet awaited
        self._writes: set[asyncio.Task[None]] = set()

    def record(
        self, *, actor: str, action: str, athlete_id: int, db: Database | None = None
    ) -> None:
        asked = (actor, action, athlete_id)
        if asked in self._asked:  # once per batch, written or not: hashed once too
            return
        self._asked.add(asked)
        event = (actor, action, subject_of(self.key, "Athlete", athlete_id))
        if self._eager_db is not None:
            self.events[event] = None
            task = asyncio.ensure_future(self._flush_logged(self._eager_db))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        elif db is not None:
            self._handed.append(writer_for(db).submit([event]))
        else:
            self.events[event] = None

    async def flush(self, db: Database) -> None:
        """Hand over what is left and wait until every event of the batch is committed."""
        if self.events:
            events, self.events = list(self.events), {}
            self._handed.append(writer_for(db).submit(events))
        handed, self._handed = self._handed, []
        if handed:
            await asyncio.gather(*handed)

    async def settle(self) -> None:
        """Wait for the background writes of an eager batch."""
        if self._writes:
            await asyncio.gather(*self._writes)

    async def _flush_logged(self, db: Database) -> None:
        try:
            await self.flush(db)
        except Exception:  # a lost audit write must not break the subscription; it is logged
            log.exception("writing audit events failed")
