"""The blend weights fitted from a deployment's own history (migration 0045; the fit itself
lives in coachgraph.graph.blend)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coachgraph.stores.sql import Executor


@dataclass(frozen=True, slots=True)
class Fitted:
    """One fit as stored: the weights (cover, fit, similar, city, learned) and what they rest
    on."""

    weights: tuple[float, float, float, float, float]
    samples: int
    content_hit: float | None
    chosen_hit: float | None
    grid: list[dict[str, Any]]
    reason: str


async def recent_assignments(conn: Executor, *, limit: int) -> list[tuple[int, int]]:
    """(athlete, coach): the latest assignment of each athlete, the most recent first (ties in
    a fixed pseudo-random order), at most `limit`; only assignments the hard constraints
    allowed (the coach's sports include the athlete's)."""
    rows = await conn.fetch(
        """
        SELECT athlete_id, coach_id FROM (
            SELECT DISTINCT ON (ca.athlete_id) ca.athlete_id, ca.coach_id, ca.assigned_at
              FROM coach_athletes ca
              JOIN athletes a ON a.id = ca.athlete_id
              JOIN coaches c ON c.id = ca.coach_id AND a.sport = ANY(c.sports)
             ORDER BY ca.athlete_id, ca.assigned_at DESC, ca.coach_id
        ) latest
        ORDER BY assigned_at DESC, hashint8(athlete_id), athlete_id
        LIMIT $1""",
        limit,
    )
    return [(r["athlete_id"], r["coach_id"]) for r in rows]


async def assigned_athletes(conn: Executor) -> int:
    """How many athletes have a coach."""
    return int(await conn.fetchval("SELECT count(DISTINCT athlete_id) FROM coach_athletes"))


async def save(conn: Executor, fitted: Fitted) -> None:
    cover, fit, similar, city, learned = fitted.weights
    await conn.execute(
        "INSERT INTO collab_blend_weights (w_cover, w_fit, w_similar, w_city, w_learned, samples, "
        "content_hit, chosen_hit, grid, reason) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)",
        cover,
        fit,
        similar,
        city,
        learned,
        fitted.samples,
        fitted.content_hit,
        fitted.chosen_hit,
        json.dumps(fitted.grid),
        fitted.reason,
    )


async def latest(conn: Executor) -> Fitted | None:
    """The most recent fit, or None when none was made."""
    row = await conn.fetchrow(
        "SELECT w_cover, w_fit, w_similar, w_city, w_learned, samples, content_hit, chosen_hit, "
        "grid::text AS grid, reason FROM collab_blend_weights ORDER BY id DESC LIMIT 1"
    )
    if row is None:
        return None
    return Fitted(
        (
            float(row["w_cover"]),
            float(row["w_fit"]),
            float(row["w_similar"]),
            float(row["w_city"]),
            float(row["w_learned"]),
        ),
        row["samples"],
        row["content_hit"],
        row["chosen_hit"],
        json.loads(row["grid"]),
        row["reason"],
    )
