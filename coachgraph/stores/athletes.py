"""Athletes, their skills and goals."""

from __future__ import annotations

from coachgraph.errors import NotFound
from coachgraph.stores import outbox, profiles
from coachgraph.stores.records import (
    AthleteChanges,
    AthleteRecord,
    AthleteScope,
    LeveledSkill,
    Page,
    SkillRecord,
)
from coachgraph.stores.sql import (
    Executor,
    athlete_scope_args,
    athlete_scope_sql,
    group,
    maker,
    page,
)

COLUMNS = "a.id, a.name, a.sport, a.city, a.timezone, a.level, a.looking_for_coach, a.created_at"
PROFILE = profiles.Profile("athlete", "athletes", "a", COLUMNS, "Athlete")
make_athlete = maker(AthleteRecord)
make_skill = maker(SkillRecord)

_FILTER = """
    AND ($2::text IS NULL OR a.sport = $2::text)
    AND ($3::text IS NULL OR a.city = $3::text)
    AND ($4::bool IS NULL OR a.looking_for_coach = $4::bool)"""


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, AthleteRecord]:
    """Athletes by id; missing ids are absent."""
    rows = await profiles.get_many(conn, PROFILE, ids=ids)
    return {row["id"]: make_athlete(row) for row in rows}


async def get_for_share(conn: Executor, *, athlete_id: int) -> AthleteRecord:
    """One athlete, its row held as read until the transaction ends (FOR SHARE)."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM athletes a WHERE a.id = $1 FOR SHARE", athlete_id
    )
    if row is None:
        raise NotFound("Athlete", athlete_id)
    return make_athlete(row)


async def list_page(
    conn: Executor,
    *,
    scope: AthleteScope,
    first: int,
    after: int | None,
    sport: str | None = None,
    city: str | None = None,
    looking_for_coach: bool | None = None,
) -> Page[AthleteRecord]:
    """Athletes `scope` may see, in id order after the cursor, filtered."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM athletes a WHERE a.id > $1 {_FILTER} "
        f"AND {athlete_scope_sql(5)} ORDER BY a.id LIMIT $9",
        after or 0,
        sport,
        city,
        looking_for_coach,
        *athlete_scope_args(scope),
        first + 1,
    )
    return page(rows, first, make_athlete)


async def count(
    conn: Executor,
    *,
    scope: AthleteScope,
    sport: str | None = None,
    city: str | None = None,
    looking_for_coach: bool | None = None,
) -> int:
    """How many athletes `scope` may see pass the filter."""
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM athletes a WHERE a.id > $1 {_FILTER} AND {athlete_scope_sql(5)}",
        0,
        sport,
        city,
        looking_for_coach,
        *athlete_scope_args(scope),
    )
    return total


async def create(
    conn: Executor,
    *,
    name: str,
    sport: str,
    timezone: str,
    level: int,
    city: str | None = None,
    looking_for_coach: bool = False,
) -> AthleteRecord:
    """Insert an athlete and its outbox event (call inside a transaction)."""
    values = {
        "name": name,
        "sport": sport,
        "city": city,
        "timezone": timezone,
        "level": level,
        "looking_for_coach": looking_for_coach,
    }
    return make_athlete(await profiles.create(conn, PROFILE, values))


async def update(conn: Executor, *, athlete_id: int, changes: AthleteChanges) -> AthleteRecord:
    """Apply `changes` to an athlete."""
    return make_athlete(await profiles.update(conn, PROFILE, row_id=athlete_id, changes=changes))


async def set_skill(conn: Executor, *, athlete_id: int, skill_id: int, level: int) -> None:
    """Record the athlete's level in a skill (insert or change)."""
    await profiles.set_skill(conn, PROFILE, owner_id=athlete_id, skill_id=skill_id, level=level)


async def set_goals(conn: Executor, *, athlete_id: int, skill_ids: list[int]) -> None:
    """Replace the athlete's goals (call inside a transaction; the skills must exist)."""
    if not await conn.fetchval("SELECT 1 FROM athletes WHERE id = $1 FOR UPDATE", athlete_id):
        raise NotFound("Athlete", athlete_id)
    await conn.execute("DELETE FROM athlete_goals WHERE athlete_id = $1", athlete_id)
    await conn.execute(
        "INSERT INTO athlete_goals (athlete_id, skill_id) "
        "SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        athlete_id,
        skill_ids,
    )
    await outbox.append(
        conn,
        aggregate="athlete",
        aggregate_id=athlete_id,
        event="athlete.goals_set",
        payload={"skill_ids": skill_ids},
    )


async def skills_for(conn: Executor, *, athlete_ids: list[int]) -> dict[int, list[LeveledSkill]]:
    """Each athlete's skills with levels and the skill rows, by skill id."""
    return await profiles.skills_for(conn, PROFILE, owner_ids=athlete_ids)


async def goals_for(conn: Executor, *, athlete_ids: list[int]) -> dict[int, list[SkillRecord]]:
    """Each athlete's goal skills, by skill id."""
    rows = await conn.fetch(
        "SELECT g.athlete_id, s.id, s.slug, s.name, s.sport "
        "FROM athlete_goals g JOIN skills s ON s.id = g.skill_id "
        "WHERE g.athlete_id = ANY($1::bigint[]) ORDER BY g.athlete_id, s.id",
        athlete_ids,
    )
    return group(rows, "athlete_id", make_skill)
