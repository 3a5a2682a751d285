"""Programs, the skills they develop, and enrollments."""

from __future__ import annotations

import asyncpg

from coachgraph.errors import Conflict, NotFound
from coachgraph.stores import outbox
from coachgraph.stores.records import EnrollmentRecord, Page, ProgramRecord, SkillRecord
from coachgraph.stores.skills import missing as missing_skills
from coachgraph.stores.sql import Executor, group, maker, page

COLUMNS = (
    "p.id, p.coach_id, p.title, p.description, p.sport, p.level, p.duration_weeks, "
    "p.enrollment_count, p.created_at"
)
make_program = maker(ProgramRecord)
make_enrollment = maker(EnrollmentRecord)
make_skill = maker(SkillRecord)

_FILTER = """
    AND ($2::text IS NULL OR p.sport = $2::text)
    AND ($3::bigint IS NULL OR p.coach_id = $3::bigint)
    AND ($4::int IS NULL OR p.level <= $4::int)"""


async def get_many(conn: Executor, *, ids: list[int]) -> dict[int, ProgramRecord]:
    """Programs by id; missing ids are absent."""
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM programs p WHERE p.id = ANY($1::bigint[])", ids)
    return {row["id"]: make_program(row) for row in rows}


async def list_page(
    conn: Executor,
    *,
    first: int,
    after: int | None,
    sport: str | None = None,
    coach_id: int | None = None,
    max_level: int | None = None,
) -> Page[ProgramRecord]:
    """Programs in id order after the cursor, filtered."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM programs p WHERE p.id > $1 {_FILTER} ORDER BY p.id LIMIT $5",
        after or 0,
        sport,
        coach_id,
        max_level,
        first + 1,
    )
    return page(rows, first, make_program)


async def count(
    conn: Executor,
    *,
    sport: str | None = None,
    coach_id: int | None = None,
    max_level: int | None = None,
) -> int:
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM programs p WHERE p.id > $1 {_FILTER}", 0, sport, coach_id, max_level
    )
    return total


async def create(
    conn: Executor,
    *,
    coach_id: int,
    title: str,
    sport: str,
    level: int,
    duration_weeks: int,
    skill_ids: list[int],
    description: str | None,
) -> ProgramRecord:
    """Insert a program with the skills it develops (call inside a transaction)."""
    for missing_id in await missing_skills(conn, ids=skill_ids):
        raise NotFound("Skill", missing_id)
    try:
        row = await conn.fetchrow(
            "INSERT INTO programs AS p "
            "(coach_id, title, description, sport, level, duration_weeks) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}",
            coach_id,
            title,
            description,
            sport,
            level,
            duration_weeks,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("Coach", coach_id) from None
    program = make_program(row)
    await conn.execute(
        "INSERT INTO program_skills (program_id, skill_id) "
        "SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        program.id,
        skill_ids,
    )
    await outbox.append(
        conn,
        aggregate="program",
        aggregate_id=program.id,
        event="program.created",
        payload={"coach_id": coach_id, "skill_ids": skill_ids},
    )
    return program


async def for_coaches(conn: Executor, *, coach_ids: list[int]) -> dict[int, list[ProgramRecord]]:
    """The programs each coach leads, by id."""
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM programs p WHERE p.coach_id = ANY($1::bigint[]) "
        "ORDER BY p.coach_id, p.id",
        coach_ids,
    )
    return group(rows, "coach_id", make_program)


async def skills_for(conn: Executor, *, program_ids: list[int]) -> dict[int, list[SkillRecord]]:
    """The skills each program develops, by skill id."""
    rows = await conn.fetch(
        "SELECT ps.program_id, s.id, s.slug, s.name, s.sport FROM program_skills ps "
        "JOIN skills s ON s.id = ps.skill_id "
        "WHERE ps.program_id = ANY($1::bigint[]) ORDER BY ps.program_id, s.id",
        program_ids,
    )
    return group(rows, "program_id", make_skill)


async def enroll(conn: Executor, *, athlete_id: int, program_id: int) -> EnrollmentRecord:
    """Enroll an athlete in a program (call inside a transaction)."""
    bumped = await conn.fetchval(
        "UPDATE programs SET enrollment_count = enrollment_count + 1 WHERE id = $1 RETURNING 1",
        program_id,
    )
    if bumped is None:
        raise NotFound("Program", program_id)
    try:
        row = await conn.fetchrow(
            "INSERT INTO enrollments (athlete_id, program_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING athlete_id, program_id, status, enrolled_at",
            athlete_id,
            program_id,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("Athlete", athlete_id) from None
    if row is None:
        raise Conflict("The athlete is already enrolled in this program")
    await outbox.append(
        conn,
        aggregate="athlete",
        aggregate_id=athlete_id,
        event="athlete.enrolled",
        payload={"program_id": program_id},
    )
    return make_enrollment(row)


async def enrollments_for(
    conn: Executor, *, athlete_ids: list[int]
) -> dict[int, list[EnrollmentRecord]]:
    """Each athlete's enrollments, oldest first."""
    rows = await conn.fetch(
        "SELECT athlete_id, program_id, status, enrolled_at FROM enrollments "
        "WHERE athlete_id = ANY($1::bigint[]) ORDER BY athlete_id, enrolled_at, program_id",
        athlete_ids,
    )
    return group(rows, "athlete_id", make_enrollment)
