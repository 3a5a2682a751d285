"""The skill catalogue and its prerequisite DAG."""

from __future__ import annotations

import asyncpg

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores import outbox
from coachgraph.stores.records import Page, SkillRecord
from coachgraph.stores.sql import Executor, group, maker, page

COLUMNS = "s.id, s.slug, s.name, s.sport"
make_skill = maker(SkillRecord)


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, SkillRecord]:
    """Skills by id; missing ids are absent."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM skills s WHERE s.id = ANY($1::bigint[])", ids)
    return {row["id"]: make_skill(row) for row in rows}


async def missing(conn: Executor, *, ids: list[int]) -> list[int]:
    """Which of `ids` name no skill, in the order given."""
    rows = await conn.fetch("SELECT id FROM skills WHERE id = ANY($1::bigint[])", ids)
    found = {row["id"] for row in rows}
    return [i for i in ids if i not in found]


async def list_page(
    conn: Executor, *, first: int, after: int | None, sport: str | None = None
) -> Page[SkillRecord]:
    """Skills in id order after the cursor, optionally of one sport."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM skills s WHERE s.id > $1 "
        "AND ($2::text IS NULL OR s.sport = $2::text) ORDER BY s.id LIMIT $3",
        after or 0,
        sport,
        first + 1,
    )
    return page(rows, first, make_skill)


async def count(conn: Executor, *, sport: str | None = None) -> int:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM skills WHERE $1::text IS NULL OR sport = $1::text", sport
    )
    return total


async def create(
    conn: Executor, *, slug: str, name: str, sport: str, prerequisite_ids: list[int]
) -> SkillRecord:
    """Insert a skill with its prerequisites (call inside a transaction).

    A new skill has no dependants yet, so linking it to existing skills cannot form a cycle.
    """
    for missing_id in await missing(conn, ids=prerequisite_ids):
        raise NotFound("Skill", missing_id, "Prerequisite skill not found")
    try:
        row = await conn.fetchrow(
            f"INSERT INTO skills AS s (slug, name, sport) VALUES ($1, $2, $3) RETURNING {COLUMNS}",
            slug,
            name,
            sport,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"A skill with slug {slug!r} already exists") from None
    skill = make_skill(row)
    await conn.execute(
        "INSERT INTO skill_prerequisites (skill_id, prerequisite_id) "
        "SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        skill.id,
        prerequisite_ids,
    )
    await outbox.append(
        conn,
        aggregate="skill",
        aggregate_id=skill.id,
        event="skill.created",
        payload={"prerequisite_ids": prerequisite_ids},
    )
    return skill


async def prerequisites_for(
    conn: Executor, *, skill_ids: list[int]
) -> dict[int, list[SkillRecord]]:
    """The direct prerequisites of each skill."""
    rows = await conn.fetch(
        f"SELECT p.skill_id AS _of, {COLUMNS} FROM skill_prerequisites p "
        "JOIN skills s ON s.id = p.prerequisite_id "
        "WHERE p.skill_id = ANY($1::bigint[]) ORDER BY p.skill_id, s.id",
        skill_ids,
    )
    return group(rows, "_of", make_skill)


async def unlocks_for(conn: Executor, *, skill_ids: list[int]) -> dict[int, list[SkillRecord]]:
    """The skills each skill is a direct prerequisite of."""
    rows = await conn.fetch(
        f"SELECT p.prerequisite_id AS _of, {COLUMNS} FROM skill_prerequisites p "
        "JOIN skills s ON s.id = p.skill_id "
        "WHERE p.prerequisite_id = ANY($1::bigint[]) ORDER BY p.prerequisite_id, s.id",
        skill_ids,
    )
    return group(rows, "_of", make_skill)
