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


_APPEND = (
    "INSERT INTO audit_events (actor, action, subject) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
)
# The same, its own transaction committed without waiting for the WAL flush: set_config(...,
# true) lasts to the end of the statement's implicit transaction, so its commit alone is
# asynchronous, in the one round trip (SET LOCAL would need BEGIN, SET, INSERT, COMMIT).
_APPEND_ASYNC_COMMIT = (
    "INSERT INTO audit_events (actor, action, subject) SELECT e.* "
    "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS c, "
    "unnest($1::text[], $2::text[], $3::text[]) AS e"
)


async def append(
    conn: Executor, *, events: list[tuple[str, str, str]], durable: bool = True
) -> None:
    """(actor, action, subject) rows, all in one INSERT. `durable=False` (on a pool, never
    inside a transaction of the caller's, whose commit it would change): the rows are committed
    and visible at once, made durable by PostgreSQL's WAL writer within ~3 x wal_writer_delay
    (600 ms by default); only a crash of the database server (not of the app) in that window
    loses them."""
    if not events:
        return
    actors, actions, subjects = (list(column) for column in zip(*events, strict=True))
    await conn.execute(_APPEND if durable else _APPEND_ASYNC_COMMIT, actors, actions, subjects)


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
