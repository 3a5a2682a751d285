"""Leaderboard values from the records: per program and enrolled athlete, over completed
sessions of that program ending in a time window. Both leaderboard backends read these same
statements (Postgres to answer, Redis to fill its sorted sets), so both hold equal values: the
sums are taken in a fixed order, as floating-point sums depend on their order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.stores.sql import Executor

METRICS = ("TRAINING_MINUTES", "SESSIONS_COMPLETED", "AVG_POWER")
_COLUMN = {"TRAINING_MINUTES": "minutes", "SESSIONS_COMPLETED": "sessions", "AVG_POWER": "power"}


@dataclass(frozen=True, slots=True)
class Values:
    """One enrolled athlete's values on one program's board for one window; `power` is None
    without power samples."""

    program_id: int
    athlete_id: int
    minutes: float
    sessions: float
    power: float | None

    def of(self, metric: str) -> float | None:
        value: float | None = getattr(self, _COLUMN[metric])
        return value


# $1 programs (null: all), $2 athletes (null: all), $3 from, $4 until (null: no bound)
_VALUES = """
WITH done AS (
    SELECT s.id, s.program_id, s.athlete_id,
           extract(epoch FROM s.ended_at - s.started_at)::float8 / 60 AS minutes
    FROM training_sessions s
    JOIN enrollments e
      ON e.athlete_id = s.athlete_id AND e.program_id = s.program_id AND e.status <> 'DROPPED'
    WHERE s.status = 'COMPLETED'
      AND ($1::bigint[] IS NULL OR s.program_id = ANY($1::bigint[]))
      AND ($2::bigint[] IS NULL OR s.athlete_id = ANY($2::bigint[]))
      AND ($3::timestamptz IS NULL OR s.ended_at >= $3::timestamptz)
      AND ($4::timestamptz IS NULL OR s.ended_at < $4::timestamptz)),
power AS (
    SELECT m.session_id, sum(m.value ORDER BY m.seq) AS total, count(*) AS n
    FROM metric_samples m
    WHERE m.session_id IN (SELECT id FROM done) AND m.kind = 'POWER'
    GROUP BY m.session_id)
SELECT d.program_id, d.athlete_id,
       sum(d.minutes ORDER BY d.id) AS minutes,
       count(*)::float8 AS sessions,
       sum(p.total ORDER BY d.id) / nullif(sum(p.n), 0)::float8 AS power
FROM done d LEFT JOIN power p ON p.session_id = d.id
GROUP BY d.program_id, d.athlete_id"""


async def values(
    conn: Executor,
    *,
    start: datetime | None,
    until: datetime | None,
    program_ids: list[int] | None = None,
    athlete_ids: list[int] | None = None,
) -> list[Values]:
    """Every (program, enrolled athlete) with a completed session of the program ending in
    [start, until) (None: unbounded), optionally of some programs or athletes only."""
    rows = await conn.fetch(_VALUES, program_ids, athlete_ids, start, until)
    return [
        Values(r["program_id"], r["athlete_id"], r["minutes"], r["sessions"], r["power"])
        for r in rows
    ]


async def top(
    conn: Executor,
    *,
    program_id: int,
    metric: str,
    start: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[tuple[int, float]]:
    """The program's best `limit` athletes by `metric`: value descending, athlete id
    ascending among equals; athletes without a value (no power samples) left out."""
    column = _COLUMN[metric]
    rows = await conn.fetch(
        f"""SELECT athlete_id, {column} AS value FROM ({_VALUES}) v
            WHERE {column} IS NOT NULL
            ORDER BY {column} DESC, athlete_id LIMIT $5""",
        [program_id],
        None,
        start,
        until,
        limit,
    )
    return [(r["athlete_id"], r["value"]) for r in rows]


async def enrolled(conn: Executor, *, program_id: int, athlete_id: int) -> bool:
    """Whether the athlete is enrolled in the program (and has not dropped out)."""
    found = await conn.fetchval(
        "SELECT 1 FROM enrollments WHERE program_id = $1 AND athlete_id = $2 "
        "AND status <> 'DROPPED'",
        program_id,
        athlete_id,
    )
    return found is not None
