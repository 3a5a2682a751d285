"""Audit events of one request, gathered as fields resolve and written once at its end."""

from __future__ import annotations

from coachgraph.lifecycle.erasure import subject_of
from coachgraph.stores import audit
from coachgraph.stores.db import Database


class AuditBatch:
    """(actor, action, subject) of one request, each once however often a field asks."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.events: dict[tuple[str, str, str], None] = {}  # ordered, without repeats

    def record(self, *, actor: str, action: str, athlete_id: int) -> None:
        self.events[(actor, action, subject_of(self.key, "Athlete", athlete_id))] = None

    async def flush(self, db: Database) -> None:
        """One INSERT for the whole request (nothing when nothing was recorded)."""
        if not self.events:
            return
        events, self.events = list(self.events), {}
        await audit.append(db.pool, events=events)  # one statement, its own transaction
