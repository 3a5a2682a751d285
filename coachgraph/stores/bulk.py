"""Bulk loading with COPY, for the seed command; one transaction, one outbox event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coachgraph.stores import outbox
from coachgraph.stores.sql import Executor, Transactional, returned


@dataclass
class Dataset:
    """Rows ready for COPY, with ids starting after `base` ids per table."""

    skills: list[tuple[Any, ...]] = field(default_factory=list)
    prerequisites: list[tuple[int, int]] = field(default_factory=list)
    coaches: list[tuple[Any, ...]] = field(default_factory=list)
    coach_skills: list[tuple[int, int, int]] = field(default_factory=list)
    programs: list[tuple[Any, ...]] = field(default_factory=list)
    program_skills: list[tuple[int, int]] = field(default_factory=list)
    athletes: list[tuple[Any, ...]] = field(default_factory=list)
    athlete_skills: list[tuple[int, int, int]] = field(default_factory=list)
    athlete_goals: list[tuple[int, int]] = field(default_factory=list)
    assignments: list[tuple[int, int]] = field(default_factory=list)
    enrollments: list[tuple[int, int]] = field(default_factory=list)
    sessions: list[tuple[Any, ...]] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in vars(self).items()}


@dataclass(frozen=True, slots=True)
class Bases:
    """The largest id already used in each table, so a seed appends."""

    skill: int = 0
    coach: int = 0
    athlete: int = 0
    program: int = 0
    session: int = 0


TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("skills", "skills", ("id", "slug", "name", "sport")),
    ("prerequisites", "skill_prerequisites", ("skill_id", "prerequisite_id")),
    (
        "coaches",
        "coaches",
        ("id", "name", "headline", "bio", "sports", "city", "timezone", "capacity", "created_at"),
    ),
    ("coach_skills", "coach_skills", ("coach_id", "skill_id", "level")),
    (
        "programs",
        "programs",
        (
            "id",
            "coach_id",
            "title",
            "description",
            "sport",
            "level",
            "duration_weeks",
            "created_at",
        ),
    ),
    ("program_skills", "program_skills", ("program_id", "skill_id")),
    (
        "athletes",
        "athletes",
        ("id", "name", "sport", "city", "timezone", "level", "looking_for_coach", "created_at"),
    ),
    ("athlete_skills", "athlete_skills", ("athlete_id", "skill_id", "level")),
    ("athlete_goals", "athlete_goals", ("athlete_id", "skill_id")),
    ("assignments", "coach_athletes", ("coach_id", "athlete_id")),
    ("enrollments", "enrollments", ("athlete_id", "program_id")),
    (
        "sessions",
        "training_sessions",
        ("id", "coach_id", "athlete_id", "status", "scheduled_at", "started_at", "ended_at"),
    ),
)
IDENTITY_TABLES = ("skills", "coaches", "athletes", "programs", "training_sessions")


async def bases(conn: Executor) -> Bases:
    """The largest id in each table, so new rows follow them."""
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(max(id), 0) FROM skills) AS skill, "
        "(SELECT coalesce(max(id), 0) FROM coaches) AS coach, "
        "(SELECT coalesce(max(id), 0) FROM athletes) AS athlete, "
        "(SELECT coalesce(max(id), 0) FROM programs) AS program, "
        "(SELECT coalesce(max(id), 0) FROM training_sessions) AS session"
    )
    return Bases(**returned(row))


async def seeded(conn: Executor, run: dict[str, int]) -> bool:
    """Whether a bulk load of this seed run (its arguments) was committed before: its
    `bulk.loaded` outbox event names them (the outbox is never pruned)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE event = 'bulk.loaded' AND payload->'run' = $1)",
        run,
    )
    return found


async def load(
    conn: Transactional,
    data: Dataset,
    *,
    run: dict[str, int] | None = None,
    progress: Callable[[str, int], None] = lambda *_: None,
) -> bool:
    """COPY every table of `data`, then fix counters and identity sequences (one transaction).
    With `run` (the seed's arguments), nothing is written if that run was loaded before, and
    False is returned: two seeds at once are serialised by an advisory lock."""
    async with conn.transaction():
        if run is not None:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('coachgraph.seed'))")
            if await seeded(conn, run):
                return False
        for attr, table, columns in TABLES:
            rows = getattr(data, attr)
            if rows:
                await conn.copy_records_to_table(table, records=rows, columns=columns)
            progress(table, len(rows))
        await conn.execute(
            "UPDATE coaches c SET active_athlete_count = n FROM "
            "(SELECT coach_id, count(*) AS n FROM coach_athletes GROUP BY coach_id) x "
            "WHERE x.coach_id = c.id AND c.active_athlete_count <> n"
        )
        await conn.execute(
            "UPDATE programs p SET enrollment_count = n FROM "
            "(SELECT program_id, count(*) AS n FROM enrollments GROUP BY program_id) x "
            "WHERE x.program_id = p.id AND p.enrollment_count <> n"
        )
        for table in IDENTITY_TABLES:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"greatest((SELECT max(id) FROM {table}), 1))"
            )
        payload: dict[str, Any] = {**data.sizes(), "run": run}
        await outbox.append(
            conn, aggregate="bulk", aggregate_id=0, event="bulk.loaded", payload=payload
        )
    await conn.execute("ANALYZE")
    return True
