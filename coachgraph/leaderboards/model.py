"""What the leaderboard backends share: the protocol, the periods and their windows.

A board ranks a program's enrolled athletes by one metric over the completed sessions of that
program ending in the current period: the ISO week (from Monday 00:00 UTC), the calendar
month (UTC), or all time. Ties are broken by athlete id, smallest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from coachgraph.stores.standings import METRICS

PERIODS = ("WEEK", "MONTH", "ALL_TIME")
__all__ = ["METRICS", "PERIODS", "Entry", "Leaderboards", "bucket", "window"]


@dataclass(frozen=True, slots=True)
class Entry:
    athlete_id: int
    value: float


def window(period: str, at: datetime) -> tuple[datetime | None, datetime | None]:
    """The [start, end) of the period holding `at`; (None, None) for ALL_TIME."""
    at = at.astimezone(UTC)
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    if period == "WEEK":
        start = day - timedelta(days=at.weekday())
        return start, start + timedelta(days=7)
    if period == "MONTH":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
        return start, end or start.replace(month=start.month + 1)
    return None, None


def bucket(period: str, at: datetime) -> str:
    """A name for the period holding `at` (its start), as Redis keys carry it."""
    start, _ = window(period, at)
    return "all" if start is None else start.date().isoformat()


class Leaderboards(Protocol):
    """Program leaderboards: read by `leaderboard`, told when a session completes or an
    athlete enrolls, rebuilt from Postgres by `reindex`."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def top(
        self, *, program_id: int, metric: str, period: str, limit: int, now: datetime
    ) -> list[Entry]:
        """The best `limit` athletes of the period holding `now`: value descending, athlete
        id ascending among equals."""

    async def refresh(self, *, program_id: int, athlete_id: int, now: datetime) -> None:
        """Bring one athlete's places on one program's boards up to date (idempotent: values
        are read again, not incremented)."""

    async def rebuild(self, *, now: datetime) -> int:
        """Every board of the current periods again from the records; returns the number of
        (program, athlete) places written."""
