"""Training sessions and their status changes."""

from __future__ import annotations

from datetime import datetime

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores import outbox, retention
from coachgraph.stores.records import Page, SessionRecord, SessionScope
from coachgraph.stores.sql import (
    Executor,
    lateral_pages,
    maker,
    returned,
    session_scope_args,
    session_scope_sql,
)

COLUMNS = (
    "s.id, s.coach_id, s.athlete_id, s.program_id, s.status::text AS status, s.scheduled_at, "
    "s.started_at, s.ended_at, s.notes, s.created_at"
)
PARENTS = {"coach": "coach_id", "athlete": "athlete_id"}
make_session = maker(SessionRecord)

# status → (allowed from, timestamp column set on entry)
TRANSITIONS = {
    "LIVE": ("SCHEDULED", "started_at"),
    "COMPLETED": ("LIVE", "ended_at"),
}


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, SessionRecord]:
    """Sessions by id; missing ids are absent."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM training_sessions s WHERE s.id = ANY($1::bigint[])", ids
    )
    return {row["id"]: make_session(row) for row in rows}


async def pages_for(
    conn: Executor,
    *,
    parent: str,
    parent_ids: list[int],
    first: int,
    after: int | None,
    status: str | None,
    scope: SessionScope,
) -> dict[int, Page[SessionRecord]]:
    """Per coach or athlete (`parent`), one page of its sessions `scope` may see, by id."""
    column = PARENTS[parent]
    scope_args = session_scope_args(scope)
    visible = (
        f"s.{column} = p.parent AND ($3::session_status IS NULL OR s.status = $3) "
        f"AND {session_scope_sql(4)}"
    )
    rows = await conn.fetch(
        f"""SELECT p.parent, t.total AS _total, x.*
            FROM unnest($1::bigint[]) AS p(parent)
            CROSS JOIN LATERAL (
                SELECT count(*) AS total FROM training_sessions s WHERE {visible}) t
            LEFT JOIN LATERAL (
                SELECT {COLUMNS} FROM training_sessions s WHERE {visible} AND s.id > $2
                ORDER BY s.id LIMIT ${4 + len(scope_args)}) x ON true""",
        parent_ids,
        after or 0,
        status,
        *scope_args,
        first + 1,
    )
    return lateral_pages(rows, first, make_session)


async def schedule(
    conn: Executor,
    *,
    coach_id: int,
    athlete_id: int,
    program_id: int | None,
    scheduled_at: datetime,
    notes: str | None,
) -> SessionRecord:
    """Schedule a session between a coach and one of its athletes (inside a transaction)."""
    pair = returned(
        await conn.fetchrow(
            "SELECT (SELECT 1 FROM coaches WHERE id = $1) AS coach, "
            "(SELECT 1 FROM athletes WHERE id = $2) AS athlete, "
            "(SELECT 1 FROM coach_athletes WHERE coach_id = $1 AND athlete_id = $2) AS assigned, "
            "(SELECT coach_id FROM programs WHERE id = $3) AS program_coach",
            coach_id,
            athlete_id,
            program_id,
        )
    )
    if pair["coach"] is None:
        raise NotFound("Coach", coach_id)
    if pair["athlete"] is None:
        raise NotFound("Athlete", athlete_id)
    if program_id is not None and pair["program_coach"] is None:
        raise NotFound("Program", program_id)
    if pair["assigned"] is None:
        raise Conflict("The coach does not coach this athlete")
    if program_id is not None and pair["program_coach"] != coach_id:
        raise Conflict("The program is led by another coach")
    row = await conn.fetchrow(
        "INSERT INTO training_sessions AS s "
        "(coach_id, athlete_id, program_id, scheduled_at, notes) "
        f"VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}",
        coach_id,
        athlete_id,
        program_id,
        scheduled_at,
        notes,
    )
    session = make_session(row)
    await outbox.append(
        conn,
        aggregate="session",
        aggregate_id=session.id,
        event="session.scheduled",
        payload={"coach_id": coach_id, "athlete_id": athlete_id},
    )
    return session


async def transition(conn: Executor, *, session_id: int, to: str) -> SessionRecord:
    """Move a session to LIVE or COMPLETED; Conflict from any other status."""
    before, stamp = TRANSITIONS[to]
    row = await conn.fetchrow(
        f"UPDATE training_sessions s SET status = $2::session_status, {stamp} = now() "
        f"WHERE s.id = $1 AND s.status = $3::session_status RETURNING {COLUMNS}",
        session_id,
        to,
        before,
    )
    if row is None:
        current = await conn.fetchval(
            "SELECT status::text FROM training_sessions WHERE id = $1", session_id
        )
        if current is None:
            raise NotFound("TrainingSession", session_id)
        raise Conflict(f"A {current} session cannot become {to}")
    if to == "COMPLETED":  # no sample commits after this: its minute rollups are final
        await retention.roll_up(conn, session_ids=[session_id])
    session = make_session(row)
    await outbox.append(
        conn,
        aggregate="session",
        aggregate_id=session_id,
        event=f"session.{to.lower()}",
        payload={"status": to, "athlete_id": session.athlete_id},
    )
    return session
