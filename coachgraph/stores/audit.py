"""The audit log: appended in one statement per request, read by subject in id order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.stores.records import Page
from coachgraph.stores.sql import Executor


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str


async def append(conn: Executor, *, events: list[tuple[str, str, str]]) -> None:
    """(actor, action, subject) rows, all in one INSERT."""
    if not events:
        return
    actors, actions, subjects = (list(column) for column in zip(*events, strict=True))
    await conn.execute(
        "INSERT INTO audit_events (actor, action, subject) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
        actors,
        actions,
        subjects,
    )


async def page(
    conn: Executor, *, subject: str | None, first: int, after: int | None
) -> Page[AuditEvent]:
    """Events (of one subject, or all) after the cursor, oldest first."""
    rows = await conn.fetch(
        "SELECT id, at, actor, action, subject FROM audit_events "
        "WHERE id > $1 AND ($2::text IS NULL OR subject = $2) ORDER BY id LIMIT $3",
        after or 0,
        subject,
        first + 1,
    )
    return Page([AuditEvent(**r) for r in rows[:first]], len(rows) > first)


async def count(conn: Executor, *, subject: str | None) -> int:
    found: int = await conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE $1::text IS NULL OR subject = $1", subject
    )
    return found
