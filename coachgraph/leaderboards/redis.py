"""Leaderboards kept in Redis sorted sets (with REDIS_URL): one set per program, metric and
period, refreshed from Postgres as sessions complete and rebuilt from it by `reindex`.

Each member is an athlete id, zero-padded, scored by its value negated: ZRANGE (ascending)
then gives the largest values first, and equal scores in member order, so equal values go
by athlete id, as in Postgres. Week and month sets expire a while after their period.

A Redis that holds no boards (new, flushed, restarted without persistence) is filled at start;
writes that bypass the API (`coachgraph seed`'s COPY) are followed by a rebuild."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coachgraph.errors import Unavailable
from coachgraph.leaderboards.model import METRICS, PERIODS, Entry, bucket, window
from coachgraph.stores import standings
from coachgraph.stores.db import Database

STORE = "leaderboard"
_REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)
KEEP_AFTER_PERIOD = timedelta(days=40)  # a finished week's or month's set, before it expires


def member(athlete_id: int) -> str:
    return f"{athlete_id:019d}"


class RedisLeaderboards:
    name = "redis"

    def __init__(
        self, db: Database, url: str, *, prefix: str = "coachgraph:board", timeout: float = 2.0
    ) -> None:
        self.db = db
        self._url = url
        self.prefix = prefix
        self._timeout = timeout  # per command and per connect
        self._redis: Any = None

    def key(self, program_id: int, metric: str, period: str, at: datetime) -> str:
        return f"{self.prefix}:{program_id}:{metric}:{period}:{bucket(period, at)}"

    async def start(self) -> None:
        self._redis = aioredis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1),
        )
        await self._call(self._redis.ping())
        if not await self._call(self._redis.exists(self.marker)):
            await self.rebuild(now=datetime.now(UTC))

    @property
    def marker(self) -> str:
        """Set by every rebuild: its absence means Redis lost (or never had) the boards."""
        return f"{self.prefix}:built"

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _call(self, command: Any) -> Any:
        try:
            return await asyncio.wait_for(command, self._timeout * 2)
        except _REDIS_ERRORS as err:
            raise Unavailable(STORE) from err

    async def top(
        self, *, program_id: int, metric: str, period: str, limit: int, now: datetime
    ) -> list[Entry]:
        key = self.key(program_id, metric, period, now)
        found = await self._call(self._redis.zrange(key, 0, limit - 1, withscores=True))
        return [Entry(int(m), -score + 0.0) for m, score in found]  # + 0.0: no -0.0

    async def refresh(self, *, program_id: int, athlete_id: int, now: datetime) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for period in PERIODS:
            start, until = window(period, now)
            rows = await standings.values(
                self.db.pool,
                start=start,
                until=until,
                program_ids=[program_id],
                athlete_ids=[athlete_id],
            )
            found = rows[0] if rows else None
            for metric in METRICS:
                key = self.key(program_id, metric, period, now)
                value = found.of(metric) if found is not None else None
                if value is None:
                    pipe.zrem(key, member(athlete_id))
                else:
                    pipe.zadd(key, {member(athlete_id): -value})
                    self._expire(pipe, key, until)
        await self._call(pipe.execute())

    async def rebuild(self, *, now: datetime) -> int:
        """Every set of the current periods, written at once (MULTI): the old sets go in the
        same transaction, so a reader sees the old boards or the new ones."""
        try:
            old = [k async for k in self._redis.scan_iter(match=f"{self.prefix}:*", count=1_000)]
        except _REDIS_ERRORS as err:
            raise Unavailable(STORE) from err
        pipe = self._redis.pipeline(transaction=True)
        if old:
            pipe.unlink(*old)
        written = 0
        for period in PERIODS:
            start, until = window(period, now)
            for row in await standings.values(self.db.pool, start=start, until=until):
                written += 1
                for metric in METRICS:
                    value = row.of(metric)
                    if value is not None:
                        key = self.key(row.program_id, metric, period, now)
                        pipe.zadd(key, {member(row.athlete_id): -value})
                        self._expire(pipe, key, until)
        pipe.set(self.marker, now.isoformat())
        await self._call(pipe.execute())
        return written

    def _expire(self, pipe: Any, key: str, until: datetime | None) -> None:
        if until is not None:
            pipe.expireat(key, until + KEEP_AFTER_PERIOD)
