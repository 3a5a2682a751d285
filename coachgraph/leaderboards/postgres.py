"""Leaderboards computed in Postgres at each request (the default, without REDIS_URL)."""

from __future__ import annotations

from datetime import datetime

from coachgraph.leaderboards.model import Entry, window
from coachgraph.stores import standings
from coachgraph.stores.db import Database


class PostgresLeaderboards:
    """Nothing kept: each board is one statement over the sessions of the period."""

    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def top(
        self, *, program_id: int, metric: str, period: str, limit: int, now: datetime
    ) -> list[Entry]:
        start, until = window(period, now)
        found = await standings.top(
            self.db.pool,
            program_id=program_id,
            metric=metric,
            start=start,
            until=until,
            limit=limit,
        )
        return [Entry(athlete_id, value) for athlete_id, value in found]

    async def refresh(self, *, program_id: int, athlete_id: int, now: datetime) -> None:
        return None  # read from the records at each request

    async def rebuild(self, *, now: datetime) -> int:
        return 0
