"""Compliance: sessions scheduled against sessions completed, per athlete, in a window of
days and the window before it; one statement for any number of athletes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coachgraph.stores.sql import Executor


@dataclass(frozen=True, slots=True)
class Compliance:
    """Of the sessions scheduled in [now - days, now) (cancelled ones do not count), how many
    were completed; the same of the window before; `dropped` when the rate fell by at least
    20 points (decided on the counts, exactly)."""

    days: int
    scheduled: int
    completed: int
    previous_scheduled: int
    previous_completed: int
    dropped: bool

    @property
    def rate(self) -> float | None:
        return self.completed / self.scheduled if self.scheduled else None

    @property
    def previous_rate(self) -> float | None:
        if not self.previous_scheduled:
            return None
        return self.previous_completed / self.previous_scheduled


# dropped: prev_c/prev_s - c/s >= 1/5, multiplied out so no float rounding decides it
_COMPLIANCE = """
SELECT w.athlete_id, w.scheduled, w.completed, w.previous_scheduled, w.previous_completed,
       (w.scheduled > 0 AND w.previous_scheduled > 0
        AND 5 * (w.previous_completed * w.scheduled - w.completed * w.previous_scheduled)
            >= w.scheduled * w.previous_scheduled) AS dropped
FROM (SELECT a.athlete_id,
             count(s.id) FILTER (WHERE s.scheduled_at >= $2::timestamptz - $3 * interval '1 day')::int
                 AS scheduled,
             count(s.id) FILTER (WHERE s.scheduled_at >= $2::timestamptz - $3 * interval '1 day'
                                   AND s.status = 'COMPLETED')::int AS completed,
             count(s.id) FILTER (WHERE s.scheduled_at < $2::timestamptz - $3 * interval '1 day')::int
                 AS previous_scheduled,
             count(s.id) FILTER (WHERE s.scheduled_at < $2::timestamptz - $3 * interval '1 day'
                                   AND s.status = 'COMPLETED')::int AS previous_completed
      FROM unnest($1::bigint[]) AS a(athlete_id)
      LEFT JOIN training_sessions s
        ON s.athlete_id = a.athlete_id AND s.status <> 'CANCELLED'
       AND s.scheduled_at >= $2::timestamptz - 2 * $3 * interval '1 day'
       AND s.scheduled_at < $2::timestamptz
      GROUP BY a.athlete_id) w"""


async def for_athletes(
    conn: Executor, *, athlete_ids: list[int], days: int, now: datetime
) -> dict[int, Compliance]:
    """Each athlete's compliance over `days` before `now` (and the `days` before that)."""
    rows = await conn.fetch(_COMPLIANCE, athlete_ids, now, days)
    return {
        r["athlete_id"]: Compliance(
            days,
            r["scheduled"],
            r["completed"],
            r["previous_scheduled"],
            r["previous_completed"],
            r["dropped"],
        )
        for r in rows
    }
