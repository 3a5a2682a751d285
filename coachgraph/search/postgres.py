"""Search in PostgreSQL: documents kept in step by the projector, queried with full-text
search (weighted tsvector, prefixes), typo correction against the indexed words (pg_trgm
candidates, Levenshtein ≤ 2) and unaccent folding."""

from __future__ import annotations

from coachgraph.stores import search_docs
from coachgraph.stores.db import Database

KINDS = {"coach": "COACH", "athlete": "ATHLETE", "program": "PROGRAM", "skill": "SKILL"}


class PostgresSearch:
    """A projection sink: `apply` the records an outbox batch touched; `rebuild` them all."""

    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def apply(self, dirty: dict[str, set[int]]) -> None:
        async with self.db.transaction() as conn:
            coaches = sorted(dirty.get("coach", ()))
            programs = set(dirty.get("program", ()))
            if coaches:  # a program's document carries its coach's name and city
                rows = await conn.fetch(
                    "SELECT id FROM programs WHERE coach_id = ANY($1::bigint[])", coaches
                )
                programs.update(r["id"] for r in rows)
            for kind, ids in (
                ("skill", sorted(dirty.get("skill", ()))),
                ("coach", coaches),
                ("athlete", sorted(dirty.get("athlete", ()))),
                ("program", sorted(programs)),
            ):
                await search_docs.refresh(conn, kind=KINDS[kind], ids=ids)

    async def rebuild(self) -> int:
        async with self.db.transaction() as conn:
            return await search_docs.rebuild(conn)
