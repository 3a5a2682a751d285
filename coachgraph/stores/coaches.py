"""Coaches, what they teach, and whom they coach."""

from __future__ import annotations

import asyncpg

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores import outbox, profiles
from coachgraph.stores.records import (
    AthleteRecord,
    AthleteScope,
    CoachChanges,
    CoachRecord,
    LeveledSkill,
    Page,
)
from coachgraph.stores.sql import (
    Executor,
    athlete_scope_args,
    athlete_scope_sql,
    group,
    lateral_pages,
    maker,
    page,
)

COLUMNS = (
    "c.id, c.name, c.headline, c.bio, c.sports, c.city, c.timezone, c.capacity, "
    "c.active_athlete_count, c.created_at"
)
make_coach = maker(CoachRecord)
make_athlete = maker(AthleteRecord)
PROFILE = profiles.Profile("coach", "coaches", "c", COLUMNS, "Coach")


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, CoachRecord]:
    """Coaches by id; missing ids are absent."""
    rows = await profiles.get_many(conn, PROFILE, ids=ids)
    return {row["id"]: make_coach(row) for row in rows}


async def list_page(
    conn: Executor,
    *,
    first: int,
    after: int | None,
    sport: str | None = None,
    city: str | None = None,
    accepting: bool | None = None,
) -> Page[CoachRecord]:
    """Coaches in id order after the cursor, filtered."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM coaches c WHERE c.id > $1 {_FILTER} ORDER BY c.id LIMIT $5",
        after or 0,
        sport,
        city,
        accepting,
        first + 1,
    )
    return page(rows, first, make_coach)


_FILTER = """
    AND ($2::text IS NULL OR $2::text = ANY(c.sports))
    AND ($3::text IS NULL OR c.city = $3::text)
    AND ($4::bool IS NULL OR (c.active_athlete_count < c.capacity) = $4::bool)"""


async def count(
    conn: Executor,
    *,
    sport: str | None = None,
    city: str | None = None,
    accepting: bool | None = None,
) -> int:
    """How many coaches pass the filter."""
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM coaches c WHERE c.id > $1 {_FILTER}", 0, sport, city, accepting
    )
    return total


async def create(
    conn: Executor,
    *,
    name: str,
    sports: list[str],
    timezone: str,
    capacity: int,
    city: str | None = None,
    headline: str | None = None,
    bio: str | None = None,
) -> CoachRecord:
    """Insert a coach and its outbox event (call inside a transaction)."""
    values = {
        "name": name,
        "headline": headline,
        "bio": bio,
        "sports": sports,
        "city": city,
        "timezone": timezone,
        "capacity": capacity,
    }
    return make_coach(await profiles.create(conn, PROFILE, values))


async def update(conn: Executor, *, coach_id: int, changes: CoachChanges) -> CoachRecord:
    """Apply `changes` to a coach; Conflict if capacity would drop below load."""
    try:
        row = await profiles.update(conn, PROFILE, row_id=coach_id, changes=changes)
    except asyncpg.CheckViolationError:
        raise Conflict("Capacity cannot be lower than the number of active athletes") from None
    return make_coach(row)


async def set_skill(conn: Executor, *, coach_id: int, skill_id: int, level: int) -> None:
    """Teach a skill at a level (insert or change)."""
    await profiles.set_skill(conn, PROFILE, owner_id=coach_id, skill_id=skill_id, level=level)


async def skills_for(conn: Executor, *, coach_ids: list[int]) -> dict[int, list[LeveledSkill]]:
    """What each coach teaches, with the skill rows, ordered by skill id."""
    return await profiles.skills_for(conn, PROFILE, owner_ids=coach_ids)


async def athlete_pages(
    conn: Executor, *, coach_ids: list[int], first: int, after: int | None, scope: AthleteScope
) -> dict[int, Page[AthleteRecord]]:
    """Per coach, one page of the athletes it coaches that `scope` may see, in id order."""
    visible = f"ca.coach_id = p.parent AND {athlete_scope_sql(3)}"
    rows = await conn.fetch(
        f"""SELECT p.parent, t.total AS _total, a.*
            FROM unnest($1::bigint[]) AS p(parent)
            CROSS JOIN LATERAL (
                SELECT count(*) AS total FROM coach_athletes ca
                JOIN athletes a ON a.id = ca.athlete_id WHERE {visible}) t
            LEFT JOIN LATERAL (
                SELECT a.* FROM coach_athletes ca JOIN athletes a ON a.id = ca.athlete_id
                WHERE {visible} AND ca.athlete_id > $2
                ORDER BY ca.athlete_id LIMIT $7) a ON true""",
        coach_ids,
        after or 0,
        *athlete_scope_args(scope),
        first + 1,
    )
    return lateral_pages(rows, first, make_athlete)


async def for_athletes(conn: Executor, *, athlete_ids: list[int]) -> dict[int, list[CoachRecord]]:
    """The coaches of each athlete, in coach id order."""
    rows = await conn.fetch(
        f"SELECT ca.athlete_id AS _athlete, {COLUMNS} FROM coach_athletes ca "
        "JOIN coaches c ON c.id = ca.coach_id "
        "WHERE ca.athlete_id = ANY($1::bigint[]) ORDER BY ca.athlete_id, c.id",
        athlete_ids,
    )
    return group(rows, "_athlete", make_coach)


async def coached_athlete_ids(conn: Executor, *, coach_id: int) -> set[int]:
    """Every athlete a coach coaches."""
    rows = await conn.fetch("SELECT athlete_id FROM coach_athletes WHERE coach_id = $1", coach_id)
    return {row["athlete_id"] for row in rows}


async def coaches_now(
    conn: Executor, *, coach_id: int, athlete_id: int, lock: bool = False
) -> bool:
    """Whether the coach coaches the athlete now. With `lock` (inside a transaction) the
    relationship is held until the transaction ends: an unassignment waits for the write that
    relied on it."""
    found = await conn.fetchval(
        "SELECT 1 FROM coach_athletes WHERE coach_id = $1 AND athlete_id = $2"
        + (" FOR SHARE" if lock else ""),
        coach_id,
        athlete_id,
    )
    return found is not None


async def assign(conn: Executor, *, coach_id: int, athlete_id: int) -> None:
    """Make the coach coach the athlete, within capacity (call inside a transaction).

    Taking the coach's row lock with the guarded increment first serialises concurrent
    assignments to one coach: the loser re-reads the new count and gets a Conflict.
    """
    taken = await conn.fetchval(
        "UPDATE coaches SET active_athlete_count = active_athlete_count + 1 "
        "WHERE id = $1 AND active_athlete_count < capacity RETURNING id",
        coach_id,
    )
    if taken is None:
        if not await conn.fetchval("SELECT 1 FROM coaches WHERE id = $1", coach_id):
            raise NotFound("Coach", coach_id)
        raise Conflict("The coach is at capacity")
    try:
        inserted = await conn.fetchval(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            coach_id,
            athlete_id,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("Athlete", athlete_id) from None
    if inserted is None:
        raise Conflict("The coach already coaches this athlete")
    await outbox.append(
        conn,
        aggregate="athlete",
        aggregate_id=athlete_id,
        event="athlete.coach_assigned",
        payload={"coach_id": coach_id},
    )


async def unassign(conn: Executor, *, coach_id: int, athlete_id: int) -> None:
    """End a coaching relationship (call inside a transaction)."""
    removed = await conn.fetchval(
        "DELETE FROM coach_athletes WHERE coach_id = $1 AND athlete_id = $2 RETURNING 1",
        coach_id,
        athlete_id,
    )
    if removed is None:
        raise Conflict("The coach does not coach this athlete")
    await conn.execute(
        "UPDATE coaches SET active_athlete_count = active_athlete_count - 1 WHERE id = $1",
        coach_id,
    )
    await outbox.append(
        conn,
        aggregate="athlete",
        aggregate_id=athlete_id,
        event="athlete.coach_unassigned",
        payload={"coach_id": coach_id},
    )
