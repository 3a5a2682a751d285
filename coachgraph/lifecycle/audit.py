"""Audit events of one request, gathered as fields resolve and written once at its end."""

from __future__ import annotations

import asyncio
import logging

from coachgraph.lifecycle.erasure import subject_of
from coachgraph.stores import audit
from coachgraph.stores.db import Database

log = logging.getLogger(__name__)


class AuditBatch:
    """(actor, action, subject) of one request, each once however often a field asks.

    Over HTTP the view flushes it when the request's operations are done. A WebSocket
    connection has no such end: with `eager_db` each new event is written at once (in the
    background), and each only once for the connection."""

    def __init__(self, key: str, *, eager_db: Database | None = None) -> None:
        self.key = key
        self.events: dict[tuple[str, str, str], None] = {}  # ordered, without repeats
        self._eager_db = eager_db
        self._asked: set[tuple[str, str, int]] = set()  # every event recorded, unhashed
        self._writes: set[asyncio.Task[None]] = set()

    def record(self, *, actor: str, action: str, athlete_id: int) -> None:
        asked = (actor, action, athlete_id)
        if asked in self._asked:  # once per batch, written or not: hashed once too
            return
        self._asked.add(asked)
        self.events[(actor, action, subject_of(self.key, "Athlete", athlete_id))] = None
        if self._eager_db is not None:
            task = asyncio.ensure_future(self._flush_logged(self._eager_db))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def flush(self, db: Database) -> None:
        """One INSERT for the whole request (nothing when nothing was recorded)."""
        if not self.events:
            return
        events, self.events = list(self.events), {}
        await audit.append(db.pool, events=events)  # one statement, its own transaction

    async def settle(self) -> None:
        """Wait for the background writes of an eager batch."""
        if self._writes:
            await asyncio.gather(*self._writes)

    async def _flush_logged(self, db: Database) -> None:
        try:
            await self.flush(db)
        except Exception:  # a lost audit write must not break the subscription; it is logged
            log.exception("writing audit events failed")
