"""Factories: build records through the stores, one transaction each, with outbox events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from coachgraph.stores import athletes, coaches, programs, sessions, skills
from coachgraph.stores.db import Database
from coachgraph.stores.records import (
    AthleteRecord,
    CoachRecord,
    ProgramRecord,
    SessionRecord,
    SkillRecord,
)

_seq = itertools.count(1)


class Factory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def coach(self, **fields: Any) -> CoachRecord:
        n = next(_seq)
        values = {
            "name": f"Coach {n}",
            "sports": ["running"],
            "timezone": "Europe/Paris",
            "capacity": 10,
            "city": "Paris",
        } | fields
        async with self.db.transaction() as conn:
            return await coaches.create(conn, **values)

    async def athlete(self, **fields: Any) -> AthleteRecord:
        n = next(_seq)
        values = {
            "name": f"Athlete {n}",
            "sport": "running",
            "timezone": "Europe/Paris",
            "level": 2,
            "city": "Paris",
            "looking_for_coach": False,
        } | fields
        async with self.db.transaction() as conn:
            return await athletes.create(conn, **values)

    async def skill(
        self, *, sport: str = "running", prerequisites: list[int] | None = None, name: str = ""
    ) -> SkillRecord:
        n = next(_seq)
        async with self.db.transaction() as conn:
            return await skills.create(
                conn,
                slug=f"skill-{n}",
                name=name or f"Skill {n}",
                sport=sport,
                prerequisite_ids=prerequisites or [],
            )

    async def program(self, coach_id: int, skill_ids: list[int], **fields: Any) -> ProgramRecord:
        values = {
            "title": f"Program {next(_seq)}",
            "sport": "running",
            "level": 2,
            "duration_weeks": 8,
            "description": None,
        } | fields
        async with self.db.transaction() as conn:
            return await programs.create(conn, coach_id=coach_id, skill_ids=skill_ids, **values)

    async def assign(self, coach_id: int, athlete_id: int) -> None:
        async with self.db.transaction() as conn:
            await coaches.assign(conn, coach_id=coach_id, athlete_id=athlete_id)

    async def teach(self, coach_id: int, skill_id: int, level: int = 3) -> None:
        async with self.db.transaction() as conn:
            await coaches.set_skill(conn, coach_id=coach_id, skill_id=skill_id, level=level)

    async def learn(self, athlete_id: int, skill_id: int, level: int = 2) -> None:
        async with self.db.transaction() as conn:
            await athletes.set_skill(conn, athlete_id=athlete_id, skill_id=skill_id, level=level)

    async def session(
        self, coach_id: int, athlete_id: int, *, program_id: int | None = None
    ) -> SessionRecord:
        async with self.db.transaction() as conn:
            return await sessions.schedule(
                conn,
                coach_id=coach_id,
                athlete_id=athlete_id,
                program_id=program_id,
                scheduled_at=datetime.now(UTC) + timedelta(days=1),
                notes=None,
            )

    async def enroll(self, athlete_id: int, program_id: int) -> None:
        async with self.db.transaction() as conn:
            await programs.enroll(conn, athlete_id=athlete_id, program_id=program_id)

    async def session_at(
        self,
        coach_id: int,
        athlete_id: int,
        *,
        scheduled_at: datetime,
        status: str = "SCHEDULED",
        program_id: int | None = None,
        ended_at: datetime | None = None,
        minutes: float = 60.0,
        power: list[float] | None = None,
    ) -> SessionRecord:
        """A session scheduled at `scheduled_at`, taken through the store's transitions to
        `status` (CANCELLED: set directly, no transition leads there); a COMPLETED one ran
        `minutes` up to `ended_at` (default: scheduled_at + minutes), with `power` samples."""
        async with self.db.transaction() as conn:
            made = await sessions.schedule(
                conn,
                coach_id=coach_id,
                athlete_id=athlete_id,
                program_id=program_id,
                scheduled_at=scheduled_at,
                notes=None,
            )
            if status in ("LIVE", "COMPLETED"):
                made = await sessions.transition(conn, session_id=made.id, to="LIVE")
            if status == "COMPLETED":
                made = await sessions.transition(conn, session_id=made.id, to="COMPLETED")
                end = ended_at or scheduled_at + timedelta(minutes=minutes)
                await conn.execute(
                    "UPDATE training_sessions SET started_at = $2, ended_at = $3 WHERE id = $1",
                    made.id,
                    end - timedelta(minutes=minutes),
                    end,
                )
                for seq, value in enumerate(power or [], start=1):
                    await conn.execute(
                        "INSERT INTO metric_samples (session_id, seq, kind, at, value) "
                        "VALUES ($1, $2, 'POWER', $3, $4)",
                        made.id,
                        seq,
                        end - timedelta(seconds=seq),
                        value,
                    )
            if status == "CANCELLED":
                await conn.execute(
                    "UPDATE training_sessions SET status = 'CANCELLED' WHERE id = $1", made.id
                )
        return made

    async def count(self, table: str) -> int:
        total: int = await self.db.pool.fetchval(f"SELECT count(*) FROM {table}")
        return total

    async def snapshot(self) -> dict[str, int]:
        """Row counts of every table: refused operations must leave them unchanged."""
        tables = [
            "coaches",
            "athletes",
            "skills",
            "skill_prerequisites",
            "coach_skills",
            "athlete_skills",
            "athlete_goals",
            "programs",
            "program_skills",
            "enrollments",
            "coach_athletes",
            "training_sessions",
            "outbox",
        ]
        return {t: await self.count(t) for t in tables}
