"""Every door's rate-limit budget per client: sliding windows in Redis with REDIS_URL (shared by
the replicas; counted in this process while Redis does not answer), in memory otherwise.

The HTTP side (who the client is, when to answer 429) is `api/ratelimit.py`; this is the
backend the composition root opens and closes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, SlidingWindowCounterSupport, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from coachgraph.config import Limits, Settings

log = logging.getLogger(__name__)


class Door(enum.Enum):
    HTTP = "http"
    INGEST = "ingest"
    MEDIA = "media"
    WS_CONNECT = "ws-connect"
    WS_OPERATION = "ws-operation"


def door_rates(limits: Limits) -> dict[Door, tuple[RateLimitItem, ...]]:
    """Each door's windows: a burst (the most in any one second) and a rate per minute."""

    def rates(door: Door, per_minute: int, burst: int | None) -> tuple[RateLimitItem, ...]:
        namespace = f"coachgraph:{door.value}"
        minute = RateLimitItemPerMinute(per_minute, namespace=namespace)
        if burst is None or burst >= per_minute:  # the minute's window bounds it already
            return (minute,)
        return (RateLimitItemPerSecond(burst, namespace=namespace), minute)

    return {
        Door.HTTP: rates(Door.HTTP, limits.rate_limit_per_minute, limits.rate_limit_burst),
        Door.INGEST: rates(Door.INGEST, limits.ingest_rate_per_minute, limits.ingest_rate_burst),
        Door.MEDIA: rates(Door.MEDIA, limits.media_rate_per_minute, limits.media_rate_burst),
        Door.WS_CONNECT: rates(Door.WS_CONNECT, limits.ws_connect_rate_per_minute, None),
        Door.WS_OPERATION: rates(
            Door.WS_OPERATION, limits.ws_operation_rate_per_minute, limits.ws_operation_rate_burst
        ),
    }


class Connections:
    """Open WebSocket connections per client in this process, up to `cap` each."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[str, int] = {}
        self.refused = 0  # connections refused at the cap (metrics)

    def room(self, client: str) -> bool:
        """Whether `client` may open one more now."""
        return self._open.get(client, 0) < self.cap

    def acquire(self, client: str) -> bool:
        count = self._open.get(client, 0)
        if count >= self.cap:
            self.refused += 1
            return False
        self._open[client] = count + 1
        return True

    def release(self, client: str) -> None:
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query when a connection goes back to the pool: asyncpg's default is one more
    round trip (advisory unlock, CLOSE, UNLISTEN, RESET) per statement, and these connections
    change no session state."""


# a request's windows at one door (the burst and the minute), spent in all or in none: each
# window's weighted count (the previous window's share still inside it, plus the current), and
# the rows spent only when every window fits; a row per window when spent, none when refused
SPEND = """WITH asked AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::int[], $5::float8[])
        AS a(key, win, weight, lim, ttl)),
seen AS (
    SELECT a.key, a.win, a.ttl,
           floor(coalesce(sum(r.count) FILTER (WHERE r.win = a.win - 1), 0) * a.weight
                 + coalesce(sum(r.count) FILTER (WHERE r.win = a.win), 0)) + $6::int <= a.lim
               AS fits
    FROM asked a LEFT JOIN rate_windows r ON r.key = a.key AND r.win IN (a.win - 1, a.win)
    GROUP BY a.key, a.win, a.weight, a.lim, a.ttl)
INSERT INTO rate_windows AS r (key, win, count, expires_at)
SELECT key, win, $6::int, now() + make_interval(secs => ttl) FROM seen
WHERE NOT EXISTS (SELECT FROM seen WHERE NOT fits)
ON CONFLICT (key, win) DO UPDATE SET count = r.count + EXCLUDED.count
RETURNING key"""


class PostgresStorage(Storage, SlidingWindowCounterSupport):
    """Sliding windows in Postgres (the rate_windows table), for workers without Redis: each
    window's count is one row, and a request's windows at a door are read and spent in one
    statement (`spend`). Its own small pool, opened at the first hit."""

    STORAGE_SCHEME = None
    SWEEP_EVERY = 1_000  # hits between deletions of expired windows

    def __init__(self, dsn: str, *, timeout: float, pool_size: int = 4) -> None:
        super().__init__(None, wrap_exceptions=True)
        self._dsn = dsn
        self._timeout = timeout
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._hits = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

    async def _conn_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=self._timeout,
                        reset=_keep_session,
                    )
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        pool = await self._conn_pool()
        now = time.time()
        current = math.floor(now / expiry)
        weight = 1 - (now / expiry) % 1  # of the previous window, still inside this one
        # spend when the weighted count allows it; the count after, or NULL when refused
        counted = await pool.fetchval(
            """WITH seen AS (
                   SELECT coalesce(sum(count) FILTER (WHERE win = $2::bigint - 1), 0) AS previous,
                          coalesce(sum(count) FILTER (WHERE win = $2::bigint), 0) AS current
                   FROM rate_windows WHERE key = $1 AND win IN ($2::bigint - 1, $2::bigint))
               INSERT INTO rate_windows AS r (key, win, count, expires_at)
               SELECT $1, $2::bigint, $4::int, now() + make_interval(secs => $6::float8)
               FROM seen WHERE floor(previous * $3::float8 + current) + $4::int <= $5::int
               ON CONFLICT (key, win) DO UPDATE SET count = r.count + EXCLUDED.count
               RETURNING count""",
            key,
            current,
            weight,
            amount,
            limit,
            2.0 * expiry,
            timeout=self._timeout,
        )
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            await pool.execute("DELETE FROM rate_windows WHERE expires_at < now()")
        return counted is not None

    async def spend(self, windows: Sequence[tuple[str, int, int]], amount: int) -> bool:
        """Spend `amount` in every window (key, limit, expiry seconds) when it fits in each,
        else in none; whether it was spent. One statement: a request's one round trip."""
        if any(amount > limit for _, limit, _ in windows):
            return False
        try:
            pool = await self._conn_pool()
            now = time.time()
            spent = await pool.fetch(
                SPEND,
                [key for key, _, _ in windows],
                [math.floor(now / expiry) for _, _, expiry in windows],
                # of the previous window, the share still inside the current one
                [1 - (now / expiry) % 1 for _, _, expiry in windows],
                [limit for _, limit, _ in windows],
                [2.0 * expiry for _, _, expiry in windows],
                amount,
                timeout=self._timeout,
            )
            self._hits += 1
            if self._hits % self.SWEEP_EVERY == 0:
                await pool.execute("DELETE FROM rate_windows WHERE expires_at < now()")
        except self.base_exceptions as err:
            raise StorageError(err) from err
        return len(spent) == len(windows)

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        pool = await self._conn_pool()
        now = time.time()
        current = math.floor(now / expiry)
        row = await pool.fetchrow(
            "SELECT coalesce(sum(count) FILTER (WHERE win = $2::bigint - 1), 0) AS previous, "
            "coalesce(sum(count) FILTER (WHERE win = $2::bigint), 0) AS current "
            "FROM rate_windows WHERE key = $1 AND win IN ($2::bigint - 1, $2::bigint)",
            key,
            current,
            timeout=self._timeout,
        )
        previous_count, current_count = int(row["previous"]), int(row["current"])
        previous_ttl = 0.0 if previous_count == 0 else (1 - (now / expiry) % 1) * expiry
        current_ttl = (1 - (now / expiry) % 1) * expiry + expiry
        return previous_count, previous_ttl, current_count, current_ttl

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        await self.clear(key)

    # the plain counters of the other strategies, which the limiter does not use: a window
    # numbered -1 per key
    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        pool = await self._conn_pool()
        count: int = await pool.fetchval(
            "INSERT INTO rate_windows AS r (key, win, count, expires_at) "
            "VALUES ($1, -1, $2::int, now() + make_interval(secs => $3::float8)) "
            "ON CONFLICT (key, win) DO UPDATE SET count = CASE WHEN r.expires_at < now() "
            "THEN EXCLUDED.count ELSE r.count + EXCLUDED.count END, expires_at = CASE WHEN "
            "r.expires_at < now() THEN EXCLUDED.expires_at ELSE r.expires_at END RETURNING count",
            key,
            amount,
            float(expiry),
        )
        return count

    async def get(self, key: str) -> int:
        pool = await self._conn_pool()
        count = await pool.fetchval(
            "SELECT count FROM rate_windows WHERE key = $1 AND win = -1 AND expires_at >= now()",
            key,
        )
        return int(count or 0)

    async def get_expiry(self, key: str) -> float:
        pool = await self._conn_pool()
        at = await pool.fetchval(
            "SELECT extract(epoch FROM expires_at) FROM rate_windows WHERE key = $1 AND win = -1",
            key,
        )
        return float(at) if at is not None else time.time()

    async def check(self) -> bool:
        try:
            pool = await self._conn_pool()
            await pool.fetchval("SELECT 1", timeout=self._timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    async def reset(self) -> int | None:
        pool = await self._conn_pool()
        status: str = await pool.execute("DELETE FROM rate_windows")
        return int(status.split()[-1])

    async def clear(self, key: str) -> None:
        pool = await self._conn_pool()
        await pool.execute("DELETE FROM rate_windows WHERE key = $1", key)


class Limiter:
    """Every door's budget per client; `hit` spends one and tells when to come back."""

    def __init__(
        self,
        limits: Limits,
        storage: Storage,
        *,
        pool: aioredis.ConnectionPool | PostgresStorage | None = None,
    ) -> None:
        self.rates = door_rates(limits)
        self.connections = Connections(limits.ws_connections_per_client)
        self.refusals: Counter[Door] = Counter()  # requests refused per door (metrics)
        self.storage = storage
        self._pool = pool
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        # while a shared storage does not answer, each process counts on its own
        self._local = MemoryStorage() if pool is not None else None
        self._local_strategy = (
            SlidingWindowCounterRateLimiter(self._local) if self._local is not None else None
        )
        self._storage_down_until = 0.0
        # after the shared storage fails, count in this process for this long
        self._fallback_seconds = limits.limiter_local_fallback_ms / 1000

    @classmethod
    def open(cls, settings: Settings) -> Limiter:
        """In Redis when REDIS_URL is set (shared by every replica); in Postgres for several
        workers without Redis (shared by the workers); else in this process."""
        if not settings.redis_url and settings.workers > 1 and settings.database_url:
            timeout = settings.limits.limiter_redis_timeout_ms / 1000
            shared = PostgresStorage(settings.database_url, timeout=timeout)
            return cls(settings.limits, shared, pool=shared)
        if not settings.redis_url:
            return cls(settings.limits, MemoryStorage())
        timeout = settings.limits.limiter_redis_timeout_ms / 1000
        pool = aioredis.ConnectionPool.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        storage = RedisStorage(
            _storage_uri(settings.redis_url),
            implementation="redispy",  # redis.asyncio, which the broker uses too
            wrap_exceptions=True,
            key_prefix="coachgraph:limits",
            connection_pool=pool,  # type: ignore[arg-type]  # documented; typed as options
        )
        return cls(settings.limits, storage, pool=pool)

    async def close(self) -> None:
        for storage in (self.storage, self._local):
            timer = getattr(storage, "timer", None)  # MemoryStorage's expiry sweep
            if timer is not None and not timer.done():
                timer.cancel()
        if self._pool is not None:
            await self._pool.aclose()

    async def hit(self, door: Door, client: str, cost: int = 1) -> int | None:
        """Spend `cost` (one request, or a batch's further operations) of `client`'s budget at
        `door`: None when it may pass, else the whole seconds until it may (Retry-After).
        Refusals are counted by door (metrics)."""
        retry = await self._spend(door, client, cost)
        if retry is not None:
            self.refusals[door] += 1
        return retry

    async def _spend(self, door: Door, client: str, cost: int) -> int | None:
        if self._local_strategy is not None and time.monotonic() < self._storage_down_until:
            return await self._hit(self._local_strategy, door, client, cost)
        try:
            return await self._hit(self._strategy, door, client, cost)
        except StorageError as err:
            if self._local_strategy is None:
                raise
            log.warning(
                "rate-limit storage unavailable (%s); counting in this process for %.0f s",
                err.storage_error,
                self._fallback_seconds,
            )
            self._storage_down_until = time.monotonic() + self._fallback_seconds
            return await self._hit(self._local_strategy, door, client, cost)

    async def _hit(
        self, strategy: SlidingWindowCounterRateLimiter, door: Door, client: str, cost: int
    ) -> int | None:
        items = self.rates[door]
        if strategy is self._strategy and isinstance(self.storage, PostgresStorage):
            # every window in one round trip; a refusal (rare) then reads which one refused
            windows = [(item.key_for(client), item.amount, item.get_expiry()) for item in items]
            if await self.storage.spend(windows, cost):
                return None
            for item in items:
                stats = await strategy.get_window_stats(item, client)
                if stats.remaining < cost:
                    return max(1, math.ceil(stats.reset_time - time.time()))
            return 1  # the windows moved on meanwhile: try again in a second
        for item in items:
            if not await strategy.hit(item, client, cost=cost):
                stats = await strategy.get_window_stats(item, client)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None


def _storage_uri(redis_url: str) -> str:
    scheme, sep, rest = redis_url.partition("://")
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}{sep}{rest}"
