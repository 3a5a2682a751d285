"""Erasure of an athlete from the records: every row about it removed in one transaction,
its coaches' and programs' counts updated, an outbox event for the projections, and a row
listing what remains to remove from the stores outside Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.errors import NotFound
from coachgraph.stores import outbox
from coachgraph.stores.sql import Executor, returned


@dataclass(frozen=True, slots=True)
class Erasure:
    id: int
    athlete_id: int
    subject: str
    topics: list[str]
    media_keys: list[str]
    stores: list[str]  # the stores done so far
    requested_at: datetime
    finished_at: datetime | None


COLUMNS = "id, athlete_id, subject, topics, media_keys, stores, requested_at, finished_at"


async def erase_records(
    conn: Executor, *, athlete_id: int, subject: str, topics_of: list[str]
) -> Erasure:
    """Remove the athlete's rows (call inside a transaction). `topics_of` are broker topic
    templates with `{}` for a session id: the entries to remove from the broker."""
    found = await conn.fetchval("SELECT id FROM athletes WHERE id = $1 FOR UPDATE", athlete_id)
    if found is None:
        raise NotFound("Athlete", athlete_id)
    session_ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM training_sessions WHERE athlete_id = $1 ORDER BY id", athlete_id
        )
    ]
    keys = [
        r[0]
        for r in await conn.fetch(
            "DELETE FROM media WHERE (owner_type = 'Athlete' AND owner_id = $1) "
            "OR (owner_type = 'TrainingSession' AND owner_id = ANY($2::bigint[])) "
            "RETURNING storage_key",
            athlete_id,
            session_ids,
        )
    ]
    coach_ids = [
        r[0]
        for r in await conn.fetch(
            "UPDATE coaches c SET active_athlete_count = c.active_athlete_count - 1 "
            "FROM coach_athletes ca WHERE ca.coach_id = c.id AND ca.athlete_id = $1 "
            "RETURNING c.id",
            athlete_id,
        )
    ]
    program_ids = [
        r[0]
        for r in await conn.fetch(
            "UPDATE programs p SET enrollment_count = p.enrollment_count - 1 "
            "FROM enrollments e WHERE e.program_id = p.id AND e.athlete_id = $1 "
            "RETURNING p.id",
            athlete_id,
        )
    ]
    # skills, goals, enrollments, assignments, sessions and with them samples, rollups and
    # whatever else references a session or the athlete go by ON DELETE CASCADE
    await conn.execute("DELETE FROM athletes WHERE id = $1", athlete_id)
    await outbox.append(
        conn, aggregate="athlete", aggregate_id=athlete_id, event="athlete.erased", payload={}
    )
    for coach_id in coach_ids:
        await outbox.append(
            conn, aggregate="coach", aggregate_id=coach_id, event="coach.updated", payload={}
        )
    for program_id in program_ids:
        await outbox.append(
            conn, aggregate="program", aggregate_id=program_id, event="program.updated", payload={}
        )
    topics = [t.format(s) for s in session_ids for t in topics_of]
    row = await conn.fetchrow(
        f"INSERT INTO erasures (athlete_id, subject, topics, media_keys, stores) "
        f"VALUES ($1, $2, $3, $4, ARRAY['postgres']) RETURNING {COLUMNS}",
        athlete_id,
        subject,
        topics,
        keys,
    )
    return Erasure(**returned(row))


async def mark_done(conn: Executor, *, erasure_id: int, store: str) -> None:
    """Record that `store` holds nothing more of the erased athlete."""
    await conn.execute(
        "UPDATE erasures SET stores = array_append(stores, $2) "
        "WHERE id = $1 AND NOT ($2 = ANY(stores))",
        erasure_id,
        store,
    )


async def get(conn: Executor, *, erasure_id: int) -> Erasure:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM erasures WHERE id = $1", erasure_id)
    return Erasure(**returned(row))


async def finish(conn: Executor, *, erasure_id: int) -> Erasure:
    row = await conn.fetchrow(
        f"UPDATE erasures SET finished_at = coalesce(finished_at, now()) WHERE id = $1 "
        f"RETURNING {COLUMNS}",
        erasure_id,
    )
    return Erasure(**returned(row))


async def pending(conn: Executor, *, limit: int) -> list[Erasure]:
    """Erasures some store outside Postgres still has to finish, oldest first."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM erasures WHERE finished_at IS NULL ORDER BY id LIMIT $1", limit
    )
    return [Erasure(**r) for r in rows]


async def erased(conn: Executor, *, athlete_ids: list[int]) -> set[int]:
    """Which of these athletes were erased (their tokens no longer count)."""
    rows = await conn.fetch(
        "SELECT athlete_id FROM erasures WHERE athlete_id = ANY($1::bigint[])", athlete_ids
    )
    return {r[0] for r in rows}
